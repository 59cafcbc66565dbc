"""C2SP tlog-policy (https://c2sp.org/tlog-policy): which witnesses must have cosigned.

log <vkey> [url]
witness <name> <vkey> [url]
group <name> all|any|<k> <member>...
quorum <name>|none
"""

from __future__ import annotations

from dataclasses import dataclass, field

from custodes.tlog.note import Note, NoteError, Verifier


class PolicyError(ValueError):
    """A policy file that does not parse, or a quorum that is not met."""


@dataclass
class Policy:
    logs: list[Verifier] = field(default_factory=list)
    witnesses: dict[str, Verifier] = field(default_factory=dict)
    groups: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    quorum: str | None = None

    @classmethod
    def parse(cls, text: str) -> Policy:
        p = cls()
        quorum_seen = False
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            try:
                if words[0] == "log" and len(words) in (2, 3):
                    p.logs.append(Verifier.parse(words[1]))
                elif words[0] == "witness" and len(words) in (3, 4):
                    name, v = words[1], Verifier.parse(words[2])
                    if name in p.witnesses or name in p.groups:
                        raise PolicyError(f"line {lineno}: '{name}' is defined twice")
                    if any(w.vkey == v.vkey for w in p.witnesses.values()):
                        raise PolicyError(f"line {lineno}: the same key is listed twice")
                    p.witnesses[name] = v
                elif words[0] == "group" and len(words) >= 4:
                    name, k, members = words[1], words[2], words[3:]
                    for m in members:
                        if m not in p.witnesses and m not in p.groups:
                            raise PolicyError(f"line {lineno}: unknown member '{m}'")
                    need = (
                        len(members)
                        if k == "all"
                        else 1
                        if k == "any"
                        else int(k)
                        if k.isascii() and k.isdigit()
                        else -1
                    )
                    if not 1 <= need <= len(members):
                        raise PolicyError(
                            f"line {lineno}: threshold must be all, any or 1..{len(members)}"
                        )
                    if name in p.groups or name in p.witnesses:
                        raise PolicyError(f"line {lineno}: '{name}' is defined twice")
                    p.groups[name] = (need, members)
                elif words[0] == "quorum" and len(words) == 2:
                    if quorum_seen:
                        raise PolicyError(f"line {lineno}: only one quorum line is allowed")
                    quorum_seen = True
                    if words[1] != "none" and words[1] not in p.groups | p.witnesses:
                        raise PolicyError(f"line {lineno}: unknown quorum '{words[1]}'")
                    p.quorum = None if words[1] == "none" else words[1]
                else:
                    raise PolicyError(f"line {lineno}: not a policy line")
            except NoteError as exc:
                raise PolicyError(f"line {lineno}: {exc}") from None
        if not quorum_seen:
            raise PolicyError("the policy has no quorum line")
        return p

    def _met(self, name: str, signed: set[str]) -> bool:
        if name in self.witnesses:
            return name in signed
        need, members = self.groups[name]
        return sum(self._met(m, signed) for m in members) >= need

    def check(self, note: Note) -> list[str]:
        """Names of the witnesses that cosigned; raises PolicyError when the quorum is not met."""
        by_key = {v.name: n for n, v in self.witnesses.items()}
        cosigned = note.verified_by(list(self.witnesses.values()))
        signed = {by_key[k] for k in cosigned}
        if self.quorum is not None and not self._met(self.quorum, signed):
            raise PolicyError(
                f"the witness quorum '{self.quorum}' is not met (cosigned by: "
                f"{', '.join(sorted(signed)) or 'none'})"
            )
        return sorted(signed)
