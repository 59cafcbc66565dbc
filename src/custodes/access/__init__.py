"""Access: users, roles, sessions and keys, the one door every service goes through, and the
inspection trail. Public names below; everything else is the room's own."""

from custodes.access import confirmations  # noqa: F401 - registers what confirming does
from custodes.access.door import SERVICES, Caller, CheckedCall, caller, enter, service
from custodes.access.roles import ACTIONS, EXCLUSIVE, PRIVILEGED, ROLES

__all__ = [
    "ACTIONS",
    "EXCLUSIVE",
    "PRIVILEGED",
    "ROLES",
    "SERVICES",
    "Caller",
    "CheckedCall",
    "caller",
    "enter",
    "service",
]
