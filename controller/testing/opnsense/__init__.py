"""A faithful emulator of the OPNsense REST API, served over real HTTP on loopback.

It answers the endpoints FazAI and its peers use (aliases, filter rules, Unbound host
overrides and settings, the bulk alias import and CSV rule upload, reconfigure/apply, rollback,
backups, firmware, the service list) the way opnsense/core 24.7 to 26.7 do, down to
validation messages, and gives tests hooks the real box lacks: fault injection, a
request log, and direct access to its configuration.

    with EmulatorServer(version="26.1", rollback_seconds=0.5) as fw:
        httpx.get(f"{fw.url}/api/firewall/alias/searchItem", auth=fw.auth)
"""

from controller.testing.opnsense.api import ApiKey
from controller.testing.opnsense.crud import InputTypeError, UserError
from controller.testing.opnsense.drift import Drift, EmulatorValidationError
from controller.testing.opnsense.faults import Fault, Faults, RequestLog, RequestRecord
from controller.testing.opnsense.rollback import RollbackTimer
from controller.testing.opnsense.server import EmulatorServer, generate_credential, serve
from controller.testing.opnsense.state import Backup, EmulatorState
from controller.testing.opnsense.versions import DEFAULT_VERSION, VERSIONS, Version, get_version

__all__ = [
    "DEFAULT_VERSION",
    "VERSIONS",
    "ApiKey",
    "Backup",
    "Drift",
    "EmulatorServer",
    "EmulatorState",
    "EmulatorValidationError",
    "Fault",
    "Faults",
    "InputTypeError",
    "RequestLog",
    "RequestRecord",
    "RollbackTimer",
    "UserError",
    "Version",
    "generate_credential",
    "get_version",
    "serve",
]
