"""Extensions that bring moto's server closer to real AWS where the operator depends on it.

moto 5.2 serves SageMaker endpoints as `InService` the moment they are created, has no
`UpdateEndpoint`, silently overwrites a model/endpoint config/endpoint created twice, and has no
way to make a call fail on purpose; its endpoints run no container and InvokeEndpoint answers a
canned body. `install()` patches moto's SageMaker backend and response classes in this process
(see `sagemaker.py`), and `ExtendedMotoServer` wraps moto's WSGI app with a fault injector (see
`faults.py`) and, in front of moto, the route of InvokeEndpoint to the endpoints' containers when
an `EndpointRuntime` is installed (see `runtime.py`). All read their settings from one `Controls`
object (`controls.py`) that tests flip directly: the server runs in the test process, so the
settings apply to every client that talks to it over HTTP, whichever process it lives in.
"""

from .controls import CONTROLS, Controls, Fault, FaultKind, Lifecycle
from .runtime import EndpointRuntime
from .sagemaker import install, set_endpoint_status
from .server import ExtendedMotoServer

__all__ = [
    "CONTROLS",
    "Controls",
    "EndpointRuntime",
    "ExtendedMotoServer",
    "Fault",
    "FaultKind",
    "Lifecycle",
    "install",
    "set_endpoint_status",
]
