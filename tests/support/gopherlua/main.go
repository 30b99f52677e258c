// argocd-lua runs an Argo CD resource health script the way Argo CD does (util/lua in
// argo-cd): gopher-lua, only the package, base and table libraries opened (no string, no os),
// the resource as the global `obj` converted value by value as Argo CD's decodeValue does, and
// the returned table read back as the health status. Usage: argocd-lua SCRIPT < object.json;
// prints the returned table as JSON.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func decodeValue(state *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case bool:
		return lua.LBool(converted)
	case []any:
		array := state.CreateTable(len(converted), 0)
		for _, item := range converted {
			array.Append(decodeValue(state, item))
		}
		return array
	case map[string]any:
		table := state.CreateTable(0, len(converted))
		for key, item := range converted {
			table.RawSetH(lua.LString(key), decodeValue(state, item))
		}
		return table
	}
	return lua.LNil
}

func encodeValue(value lua.LValue) any {
	switch converted := value.(type) {
	case lua.LString:
		return string(converted)
	case lua.LNumber:
		return float64(converted)
	case lua.LBool:
		return bool(converted)
	case *lua.LTable:
		result := map[string]any{}
		converted.ForEach(func(key, item lua.LValue) { result[key.String()] = encodeValue(item) })
		return result
	}
	return nil
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: argocd-lua SCRIPT < object.json")
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		return err
	}
	var object map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&object); err != nil {
		return err
	}
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := state.CallByParam(lua.P{Fn: state.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return err
		}
	}
	state.SetGlobal("obj", decodeValue(state, object))
	if err := state.DoString(string(script)); err != nil {
		return err
	}
	returned := state.Get(-1)
	if returned.Type() != lua.LTTable {
		return fmt.Errorf("the script returned %s, not a table", returned.Type())
	}
	return json.NewEncoder(os.Stdout).Encode(encodeValue(returned))
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
