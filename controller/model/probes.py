"""Read-only probes: which argv a check may run on a node, by allow-list.

A Goal's Linux checks run as the SSH user (often root) during every plan, ``fazai
plan`` and the review plans of pull requests included, and the LLM agent's ``shell``
action will run through the same gate. So an argv is allowed only when it is a probe
that reads: :func:`refusal` answers None for those and a one-line reason for anything
else. Changing a node is never a check's business: a change belongs in a typed document
(File, Package, Service, Sysctl, NftTable, User, ...) or, later, in a Tool.

The gate errs towards refusing: a wrong refusal costs a rewritten check, a wrong allow
runs a write as root during a dry run.

Rules for every argv
    * 1 to ``MAX_ARGS`` strings, at most ``MAX_CHARS`` characters in all, none with NUL.
    * ``argv[0]`` is a bare program name, or an absolute normalized path in one of
      ``PROGRAM_DIRS`` (a program elsewhere, /tmp/cat, could be anything). The rules
      below are chosen by the name (the basename).
    * No argument may open a device: none is /dev or holds ``dev/`` (/dev/null
      excepted), ``fd/`` or ``map_files/`` (a process's open files), ``kmsg`` or
      ``trace_pipe`` (their read consumes them), unless the program only
      looks at paths (``STAT_ONLY``). Opening a device can act on it (opening
      /dev/watchdog arms a reboot, a tape device rewinds; reading kmsg consumes it).
      This refuses some harmless arguments too, ``grep /dev/sda1 /etc/fstab`` among
      them (``findmnt`` reads mounts without opening anything).
    * Long options are matched the way GNU getopt matches them: an abbreviation of a
      refused option (``--fol`` for ``--follow``) is refused too. Where a program's
      options are allow-listed, only the exact spellings below are taken.

Programs that only read, whatever their arguments (minus the options named)
    test, [, true, false, cat, head, wc, grep/egrep/fgrep (not -D/--devices, nor
    -r/-R/-d/--recursive: a walk reaches files whose read acts), stat,
    ls, readlink, realpath, id, getent, whoami, uname, df, findmnt (not -p/--poll,
    -F/--tab-file),
    lsblk, ps, pgrep, pidof, which, sha256sum, sha1sum, md5sum, cmp, diff (not
    -r/-N/--recursive/--new-file), jq,
    ss (not -K/--kill, -D/--diag, -E/--events), nproc, uptime, free (not -s/--seconds,
    -c/--count), lscpu, journalctl (no wildcards, not -f/--follow, --vacuum-*,
    --rotate, --flush, --sync, --setup-keys, --update-catalog, --relinquish-var,
    --smart-relinquish-var, --cursor-file (it writes the file), --image, -i/--file).

Programs with a grammar of their own (anything outside it is refused)
    tail        -n/-c N, -q, -v, -z and files (never -f/-F or +N: it would not end)
    date        -d/-f/-r V, -u, -R, -I[FMT], --iso-8601[=FMT], --rfc-3339=FMT; an
                operand only as +FORMAT (date MMDDhhmm sets the clock)
    hostname    no argument, or one of -f -s -i -I -d
    ping        -c N (1 to 10, required), -W N, -n, -q, -4, -6 and one host
    timedatectl nothing, ``status`` or ``show`` (with -p/--property, --value, -a)
    hostnamectl nothing or ``status`` (with --static, --transient, --pretty)
    systemctl   is-active, is-enabled, is-failed, status, show, list-units,
                list-unit-files, list-timers, cat, get-default; options --no-pager,
                -q, -a, -l, --value, --no-legend, --plain, -p/-P/-t/-n/-o V, --state=V
    ip          [-4 -6 -j -br -d -s -o] addr|address|link|route|rule|neigh
                [show|list|get ...]
    sysctl      names only (no '='), with -n -e -b -a -A -N -X
    nft         [-a -n -s -j -t -y] list <ruleset|tables|table|chains|...> [names]
    iptables    -S or -L [chain], with -n -v -x -t TABLE --line-numbers
    ip6tables   as iptables
    dpkg        one of -s -l -L -S --status --list --listfiles --search
                --print-architecture, then package names or patterns
    dpkg-query  one of -W -s -l -L -S (and their long names), -f/--showformat FMT
    rpm         a query: first -q (with a i l c d f p R s in the same cluster) or
                --query; then query flags and --qf/--queryformat FMT; no URLs
    apt-cache   policy, show, madison, depends, rdepends, search (with --names-only,
                --full, --installed, --recurse, --no-all-versions, -q)
    curl        GET/HEAD of http:// or https:// URLs only: -q -f -s -S -k -I -L -4 -6
                (single or clustered), -m/--max-time N, --connect-timeout N,
                -o/--output /dev/null, -w FORMAT (no @file, no %output),
                -H HEADER (no @file), --resolve H:P:A, --http1.1, --cacert PATH
    nginx       -t or -T (with -q): a configuration test
    apachectl   -t or configtest (apache2ctl too)
    sshd        -t or -T
    named-checkconf  the node's own configuration: -z -j -p -x -l, no file
    visudo      -c (with -q, -s, -f FILE, files)

What the gate cannot see
    A GET that an endpoint acts on is still a write (the API checks of OPNsense goals
    are limited to reading actions elsewhere); files the node holds are trusted (a
    checksum list or a symlink can name a device, root's ~/.curlrc adds options to
    curl); curl -L follows redirects to the protocols curl allows by default (HTTP(S)
    and FTP(S) since 7.65.2); apt-cache and iptables -t may refresh a cache or load a
    table module, and nginx -t may create its log files, as any run of them does.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_ARGS = 64
MAX_CHARS = 32 * 1024
PROGRAM_DIRS = frozenset(
    {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin"}
)
WHERE = "controller/model/probes.py"
# Programs that stat the paths they are given and never open them: a device is fine.
STAT_ONLY = frozenset(
    {"test", "[", "stat", "ls", "readlink", "realpath", "df", "findmnt", "lsblk", "which"}
)

Rule = Callable[[str, Sequence[str]], "str | None"]


def refusal(argv: Sequence[str]) -> str | None:
    """None when ``argv`` is a read-only probe this module allows, else why not (one
    line naming the program or argument at fault and what is allowed instead)."""
    if isinstance(argv, str) or not argv:
        return "a command is a non-empty list of arguments"
    if len(argv) > MAX_ARGS:
        return f"a command has at most {MAX_ARGS} arguments, this one {len(argv)}"
    if not all(isinstance(a, str) for a in argv):
        return "every argument of a command is a string"
    if sum(len(a) for a in argv) > MAX_CHARS:
        return f"a command is at most {MAX_CHARS} characters long in all"
    if any("\x00" in a for a in argv):
        return "an argument contains a NUL character"
    program = argv[0]
    name = posixpath.basename(program)
    if not name:
        return "the command's first item must name a program"
    if "/" in program:
        directory = posixpath.dirname(program)
        if posixpath.normpath(program) != program or directory not in PROGRAM_DIRS:
            return (
                f"{program!r}: a program is named bare or by its normalized path in "
                f"{', '.join(sorted(PROGRAM_DIRS))} (a program elsewhere could be anything)"
            )
    rule = RULES.get(name)
    if rule is None:
        return (
            f"{name!r} is not a read-only probe: a check runs one of "
            f"{', '.join(sorted(RULES))} (the allow-list and each program's arguments "
            f"are documented in {WHERE}); a change belongs in a typed document or a Tool"
        )
    args = argv[1:]
    if name not in STAT_ONLY:
        opened = next((a for a in args if _opens_device(a, name)), None)
        if opened is not None:
            return (
                f"{name}: {opened!r} may open a device, and opening one can act on it "
                "(a check reads files; of devices only /dev/null)"
            )
    return rule(name, args)


# Opening these acts on something: a device (by path, or as a process's open file or
# mapping in /proc), or the kernel log, whose read consumes what it returns.
_DEVICE_HINTS = ("dev/", "fd/", "map_files/", "kmsg", "trace_pipe")


def _opens_device(arg: str, name: str = "") -> bool:
    if arg == "/dev/null":
        return False
    folder = arg.rstrip("/")
    # The folder itself too: a program that walks it (diff -r) opens what is inside. A
    # bare "dev" is /dev from the checks' cwd, except as ip's keyword (ip ... dev eth0).
    walked = folder == "/dev" or folder.endswith("/dev") or (folder == "dev" and name != "ip")
    walked = walked or folder.endswith("/fd") or folder.endswith("/map_files")
    return walked or any(hint in arg for hint in _DEVICE_HINTS)


def allowed_programs() -> tuple[str, ...]:
    """The program names a check may run, sorted."""
    return tuple(sorted(RULES))


# --- option scanning -----------------------------------------------------------------


def _refuse_options(
    short: str = "", long: Sequence[str] = (), why: str = "", exact: Sequence[str] = ()
) -> Rule:
    """A program that reads whatever it is given, except the options named. Every letter
    of a short cluster is looked at (a value glued to its option may be refused: give it
    as a separate argument), and a long option is refused when it abbreviates one named,
    unless it is spelled out in ``exact`` (getopt takes an exact name before any
    abbreviation: journalctl's --cursor is not --cursor-file)."""

    def rule(name: str, args: Sequence[str]) -> str | None:
        # Every argument is looked at, after a "--" too: which arguments are values
        # (``-e --`` makes "--" a pattern, and getopt reads options on after it) is the
        # program's to say, and guessing it wrong would let a refused option through.
        for arg in args:
            if arg == "--":
                continue
            if arg.startswith("--"):
                word = arg[2:].partition("=")[0]
                hit = (
                    None
                    if word in exact
                    else next((r for r in long if word and r.startswith(word)), None)
                )
                if hit is not None:
                    return f"{name}: {arg!r} (--{hit}) is refused: {why}"
            elif arg.startswith("-") and len(arg) > 1:
                hit = next((c for c in arg[1:] if c in short), None)
                if hit is not None:
                    return (
                        f"{name}: {arg!r} (-{hit}) is refused: {why} (a value goes in "
                        "an argument of its own)"
                    )
        return None

    return rule


def _any(name: str, args: Sequence[str]) -> str | None:
    return None


def _no_globs(rule: Rule) -> Rule:
    """``rule``, for a program that expands wildcards itself (journalctl's paths): a
    pattern could name what the device check cannot see (/d?v/watchdog)."""

    def checked(name: str, args: Sequence[str]) -> str | None:
        pattern = next((a for a in args if any(c in a for c in "*?[")), None)
        if pattern is not None:
            return f"{name}: {pattern!r}: wildcards are refused ({name} expands them itself)"
        return rule(name, args)

    return checked


Check = Callable[[str], "str | None"]


def _anything(value: str) -> str | None:
    return None


@dataclass(frozen=True)
class Grammar:
    """An allow-list of options. ``flags`` take no value; ``values`` take one (glued to
    a short option, after ``=`` on a long one when ``equals``, or the next argument), each
    with a check of the value; ``optional`` take a value only glued or after ``=``."""

    flags: frozenset[str] = frozenset()
    values: Mapping[str, Check] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    equals: bool = True


@dataclass(frozen=True)
class Parsed:
    options: tuple[tuple[str, str | None], ...]  # (option as listed, value)
    operands: tuple[str, ...]


def _parse(name: str, grammar: Grammar, args: Sequence[str]) -> Parsed | str:
    """The options and operands of ``args``, or why they are refused."""
    options: list[tuple[str, str | None]] = []
    operands: list[str] = []
    index = 0

    def value_of(option: str, glued: str | None) -> str | None:
        nonlocal index
        if glued is not None:
            return glued
        index += 1
        return args[index] if index < len(args) else None

    while index < len(args):
        arg = args[index]
        if arg == "--":
            operands.extend(args[index + 1 :])
            break
        if arg.startswith("--"):
            word, eq, rest = arg.partition("=")
            if eq and not grammar.equals:
                return f"{name}: {arg!r}: give the value as the next argument"
            if word in grammar.flags and not eq:
                options.append((word, None))
            elif word in grammar.optional:
                options.append((word, rest if eq else None))
            elif word in grammar.values:
                value = value_of(word, rest if eq else None)
                if value is None:
                    return f"{name}: {word} needs a value"
                problem = grammar.values[word](value)
                if problem:
                    return f"{name}: {word} {value!r}: {problem}"
                options.append((word, value))
            else:
                return _not_allowed(name, arg, grammar)
        elif arg.startswith("-") and len(arg) > 1:
            for at, letter in enumerate(arg[1:], start=2):
                option = "-" + letter
                glued = arg[at:] or None
                if option in grammar.optional:
                    options.append((option, glued))
                    break
                if option in grammar.values:
                    value = value_of(option, glued)
                    if value is None:
                        return f"{name}: {option} needs a value"
                    problem = grammar.values[option](value)
                    if problem:
                        return f"{name}: {option} {value!r}: {problem}"
                    options.append((option, value))
                    break
                if option not in grammar.flags:
                    return _not_allowed(
                        name, arg if len(arg) == 2 else f"{option} in {arg}", grammar
                    )
                options.append((option, None))
        else:
            operands.append(arg)
        index += 1
    return Parsed(tuple(options), tuple(operands))


def _not_allowed(name: str, what: str, grammar: Grammar) -> str:
    known = sorted({*grammar.flags, *grammar.values, *grammar.optional})
    return (
        f"{name}: {what!r} is not an option a probe may use; allowed: "
        f"{' '.join(known) if known else 'none'} (see {WHERE})"
    )


def _grammar_rule(
    grammar: Grammar, then: Callable[[str, Parsed], str | None] | None = None
) -> Rule:
    def rule(name: str, args: Sequence[str]) -> str | None:
        parsed = _parse(name, grammar, args)
        if isinstance(parsed, str):
            return parsed
        return then(name, parsed) if then else None

    return rule


def _has(parsed: Parsed, *options: str) -> bool:
    return any(option in options for option, _ in parsed.options)


def _number(most: float | None = None, least: float = 0, integer: bool = False) -> Check:
    pattern = re.compile(r"[0-9]{1,6}" if integer else r"[0-9]{1,6}(\.[0-9]{1,3})?")

    def check(value: str) -> str | None:
        if not pattern.fullmatch(value):
            return "not a number" if not integer else "not a whole number"
        if float(value) < least or (most is not None and float(value) > most):
            return f"must be from {least:g} to {most:g}" if most is not None else "too small"
        return None

    return check


def _flags(*names: str) -> frozenset[str]:
    return frozenset(names)


# --- programs with grammars ------------------------------------------------------------


_TAIL = Grammar(
    flags=_flags("-q", "-v", "-z", "--quiet", "--silent", "--verbose", "--zero-terminated"),
    values={"-n": _anything, "-c": _anything, "--lines": _anything, "--bytes": _anything},
)


def _tail(name: str, args: Sequence[str]) -> str | None:
    for arg in args:
        if arg.startswith("+"):
            # The obsolete +N[bcl][f] form: "tail +f FILE" follows for ever.
            return f"{name}: {arg!r}: the +N form is refused (+f follows); use -n +N"
        short = arg.startswith("-") and not arg.startswith("--")
        if (short and arg[1:2] in ("f", "F")) or (arg.startswith("--f") and len(arg) > 3):
            return f"{name}: {arg!r}: following a file would not end; read it once"
    return _grammar_rule(_TAIL)(name, args)


_DATE = Grammar(
    flags=_flags(
        "-u", "-R", "--utc", "--universal", "--rfc-email", "--debug", "--resolution"
    ),
    values={
        "-d": _anything, "-f": _anything, "-r": _anything,
        "--date": _anything, "--file": _anything, "--reference": _anything,
    },
    optional=_flags("-I", "--iso-8601", "--rfc-3339"),
)  # fmt: skip


def _date(name: str, args: Sequence[str]) -> str | None:
    for arg in args:
        if arg == "--":
            break
        word = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if (arg[:2] == "-s") or (word and "set".startswith(word)):
            return f"{name}: {arg!r} sets the clock; a probe only reads it"
    return _grammar_rule(_DATE, _date_operands)(name, args)


def _date_operands(name: str, parsed: Parsed) -> str | None:
    for operand in parsed.operands:
        if not operand.startswith("+"):
            return (
                f"{name}: {operand!r}: an operand of date sets the clock; "
                "a probe gives only +FORMAT"
            )
    return None


def _hostname(name: str, args: Sequence[str]) -> str | None:
    if len(args) > 1 or (args and args[0] not in ("-f", "-s", "-i", "-I", "-d")):
        return (
            f"{name}: {' '.join(args)!r}: hostname with an operand sets the name; "
            "a probe takes no argument or one of -f -s -i -I -d"
        )
    return None


_PING = Grammar(
    flags=_flags("-n", "-q", "-4", "-6"),
    values={"-c": _number(10, 1, integer=True), "-W": _number(30)},
)


def _ping_then(name: str, parsed: Parsed) -> str | None:
    if not _has(parsed, "-c"):
        return f"{name}: a probe pings a counted number of times: give -c N (1 to 10)"
    if len(parsed.operands) != 1:
        return f"{name}: a probe pings one host"
    return None


def _verb_rule(
    grammar: Grammar, verbs: Sequence[str], none_ok: bool, takes_operands: bool = True
) -> Rule:
    def then(name: str, parsed: Parsed) -> str | None:
        if not parsed.operands:
            return None if none_ok else f"{name}: give one of {', '.join(verbs)}"
        verb = parsed.operands[0]
        if verb not in verbs:
            return (
                f"{name}: {verb!r} is not a reading subcommand; a probe uses "
                f"{', '.join(verbs)} (a change belongs in a typed document or a Tool)"
            )
        if not takes_operands and len(parsed.operands) > 1:
            return f"{name} {verb} takes no further operand"
        return None

    return _grammar_rule(grammar, then)


_TIMEDATECTL = Grammar(
    flags=_flags("--no-pager", "--value", "-a", "--all", "--no-ask-password"),
    values={"-p": _anything, "--property": _anything},
)
_HOSTNAMECTL = Grammar(flags=_flags("--static", "--transient", "--pretty", "--no-ask-password"))

SYSTEMCTL_VERBS = (
    "is-active", "is-enabled", "is-failed", "status", "show", "list-units",
    "list-unit-files", "list-timers", "cat", "get-default",
)  # fmt: skip
_SYSTEMCTL = Grammar(
    flags=_flags(
        "--no-pager", "-q", "--quiet", "-a", "--all", "-l", "--full", "--value",
        "--no-legend", "--plain", "--no-ask-password",
    ),
    values={
        "-p": _anything, "--property": _anything, "-P": _anything,
        "-t": _anything, "--type": _anything, "--state": _anything,
        "-n": _number(10000, integer=True), "--lines": _number(10000, integer=True),
        "-o": _anything, "--output": _anything,
    },
)  # fmt: skip

# ip matches options and words by prefix; only these exact spellings are taken.
_IP_OPTIONS = frozenset(
    f"{dash}{word}"
    for dash in ("-", "--")
    for word in ("4", "6", "j", "json", "br", "brief", "d", "details", "s", "stats",
                 "statistics", "o", "oneline")
)  # fmt: skip
_IP_OBJECTS = ("addr", "address", "link", "route", "rule", "neigh", "neighbor", "neighbour")
_IP_VERBS = ("show", "list", "get")
_IP_WRITES = frozenset(
    {"add", "del", "delete", "change", "chg", "replace", "flush", "set", "exec",
     "prepend", "append", "save", "restore", "monitor", "test"}
)  # fmt: skip


def _ip(name: str, args: Sequence[str]) -> str | None:
    index = 0
    while index < len(args) and args[index].startswith("-"):
        if args[index] not in _IP_OPTIONS:
            return (
                f"{name}: {args[index]!r} is not an option a probe may use; allowed: "
                "-4 -6 -j -br -d -s -o (and their long forms)"
            )
        index += 1
    rest = args[index:]
    if not rest or rest[0] not in _IP_OBJECTS:
        got = repr(rest[0]) if rest else "nothing"
        return f"{name}: {got} is not an object a probe reads; give one of {', '.join(_IP_OBJECTS)}"
    if len(rest) > 1 and rest[1] not in _IP_VERBS:
        return (
            f"{name}: {rest[0]} {rest[1]!r}: a probe only reads "
            f"({' | '.join(_IP_VERBS)}); a change belongs in a typed document or a Tool"
        )
    for word in rest[2:]:
        if word in _IP_WRITES or word.startswith("-"):
            return f"{name}: {word!r} has no place in a reading ip command"
    return None


_SYSCTL = Grammar(
    flags=_flags(
        "-n",
        "-e",
        "-b",
        "-a",
        "-A",
        "-N",
        "-X",
        "--values",
        "--ignore",
        "--binary",
        "--all",
        "--names",
    )
)


# A key is its segments joined by dots or slashes: no empty, '.' or '..' segment, so no
# key reaches outside /proc/sys.
_SYSCTL_KEY = re.compile(r"[A-Za-z0-9_:@*+-]+([./][A-Za-z0-9_:@*+-]+)*")


def _sysctl_then(name: str, parsed: Parsed) -> str | None:
    for operand in parsed.operands:
        if "=" in operand:
            return (
                f"{name}: {operand!r} sets a value; a probe names keys only "
                "(a Sysctl document sets them)"
            )
        if not _SYSCTL_KEY.fullmatch(operand):
            return f"{name}: {operand!r} is not a key (dotted or slashed words)"
    return None


_NFT = Grammar(
    flags=_flags(
        "-a",
        "--handle",
        "-n",
        "--numeric",
        "-s",
        "--stateless",
        "-j",
        "--json",
        "-t",
        "--terse",
        "-y",
        "--numeric-priority",
    )
)
_NFT_OBJECTS = (
    "ruleset", "tables", "table", "chains", "chain", "sets", "set", "maps", "map",
    "counters", "counter", "quotas", "quota", "flowtables", "flowtable", "meters",
    "meter", "limits", "limit", "hooks",
)  # fmt: skip
_NFT_WORD = re.compile(r"[A-Za-z0-9_.:-]+")  # whole words only: fullmatch
_NFT_VERBS = frozenset(
    {"add", "create", "insert", "replace", "delete", "destroy", "flush", "reset",
     "rename", "import", "export", "monitor", "describe", "get"}
)  # fmt: skip


def _nft_then(name: str, parsed: Parsed) -> str | None:
    words = parsed.operands
    if len(words) < 2 or words[0] != "list" or words[1] not in _NFT_OBJECTS:
        return (
            f"{name}: {' '.join(words)!r}: a probe only lists "
            f"(nft list {'|'.join(_NFT_OBJECTS[:3])}|...)"
        )
    for word in words[2:]:
        # nft joins its arguments into one script: a ';' or a newline starts another
        # command, so every word is one plain token.
        if not _NFT_WORD.fullmatch(word) or word in _NFT_VERBS or word == "list":
            return f"{name}: {word!r} is not a plain family or name in nft list"
    return None


_IPTABLES = Grammar(
    flags=_flags(
        "-S", "-L", "-n", "-v", "-x", "--list", "--list-rules", "--numeric", "--verbose",
        "--exact", "--line-numbers",
    ),
    values={
        "-t": lambda v: None if v in ("filter", "nat", "mangle", "raw", "security") else
        "not a table (filter, nat, mangle, raw, security)",
        "--table": lambda v: None if v in ("filter", "nat", "mangle", "raw", "security")
        else "not a table (filter, nat, mangle, raw, security)",
    },
)  # fmt: skip
_CHAIN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _iptables_then(name: str, parsed: Parsed) -> str | None:
    commands = [o for o, _ in parsed.options if o in ("-S", "-L", "--list", "--list-rules")]
    if len(commands) != 1:
        return f"{name}: a probe gives exactly one of -S or -L"
    if len(parsed.operands) > 2 or not all(_CHAIN.fullmatch(o) for o in parsed.operands):
        return f"{name}: after -S/-L only a chain (and a rule number) may follow"
    return None


_DPKG_ACTIONS = (
    "-s", "-l", "-L", "-S", "--status", "--list", "--listfiles", "--search",
    "--print-architecture",
)  # fmt: skip
_DPKG = Grammar(flags=_flags(*_DPKG_ACTIONS, "--no-pager"))
_DPKG_QUERY_ACTIONS = (
    "-W", "--show", "-s", "--status", "-l", "--list", "-L", "--listfiles", "-S", "--search",
)  # fmt: skip
_DPKG_QUERY = Grammar(
    flags=_flags(*_DPKG_QUERY_ACTIONS, "--no-pager"),
    values={"-f": _anything, "--showformat": _anything},
)


def _one_action(actions: Sequence[str]) -> Callable[[str, Parsed], str | None]:
    def then(name: str, parsed: Parsed) -> str | None:
        found = [o for o, _ in parsed.options if o in actions]
        if len(found) != 1:
            return f"{name}: a probe gives exactly one of {' '.join(actions)}"
        if any(o.startswith("-") for o in parsed.operands):
            return f"{name}: operands are package names or patterns"
        return None

    return then


def _queryformat(value: str) -> str | None:
    lowered = value.lower()
    if "%(" in value or "%{lua" in lowered or "%{expand" in lowered:
        return "a query format holds tags only (no macros)"
    return None


_RPM = Grammar(
    flags=_flags(
        "--query",
        "-a",
        "--all",
        "-f",
        "--file",
        "-p",
        "--package",
        "--info",
        "-l",
        "--list",
        "-c",
        "--configfiles",
        "-d",
        "--docfiles",
        "-R",
        "--requires",
        "--provides",
        "-s",
        "--state",
        "--changelog",
        "--scripts",
        "--last",
        "--whatprovides",
        "--whatrequires",
    ),
    values={"--qf": _queryformat, "--queryformat": _queryformat},
    equals=True,
)
_RPM_FIRST = re.compile(r"-q[ailcdfpRs]*")


def _rpm(name: str, args: Sequence[str]) -> str | None:
    # rpm reads -i as install unless a query came first: the query opens the argv, and a
    # lone -i is refused (--info says the same).
    if not args or not (_RPM_FIRST.fullmatch(args[0]) or args[0] == "--query"):
        return f"{name}: a probe is a query: the first argument is -q[ailcdfpRs] or --query"
    parsed = _parse(name, _RPM, args[1:])
    if isinstance(parsed, str):
        return parsed
    for operand in parsed.operands:
        if "://" in operand or "%" in operand:
            return f"{name}: {operand!r}: operands are package names or local paths"
    return None


_APT_CACHE = Grammar(
    flags=_flags(
        "--names-only",
        "--full",
        "--installed",
        "--recurse",
        "--no-all-versions",
        "-q",
        "--quiet",
    )
)
_APT_CACHE_VERBS = ("policy", "show", "madison", "depends", "rdepends", "search")


def _no_at(value: str) -> str | None:
    if value.startswith("@"):
        return "an @file is refused"
    if "\r" in value or "\n" in value:
        return "a line break is refused"
    return None


def _write_out(value: str) -> str | None:
    if "%output" in value.lower():
        return "%output{...} writes a file"
    return _no_at(value)


def _dev_null(value: str) -> str | None:
    return None if value == "/dev/null" else "a probe writes no file (only /dev/null)"


_CURL = Grammar(
    flags=_flags(
        "-q", "--disable", "-f", "--fail", "-s", "--silent", "-S", "--show-error", "-k",
        "--insecure", "-I", "--head", "-L", "--location", "-4", "--ipv4", "-6", "--ipv6",
        "--http1.1",
    ),
    values={
        "-m": _number(30), "--max-time": _number(30), "--connect-timeout": _number(30),
        "-o": _dev_null, "--output": _dev_null,
        "-w": _write_out, "--write-out": _write_out,
        "-H": _no_at, "--header": _no_at,
        "--resolve": _no_at, "--cacert": _no_at,
    },
    equals=False,  # curl has no --option=value; such a word would be an unknown option
)  # fmt: skip


def _curl_then(name: str, parsed: Parsed) -> str | None:
    if not parsed.operands:
        return f"{name}: give the http:// or https:// URL to read"
    for url in parsed.operands:
        if url.startswith("@") or not re.fullmatch(r"https?://[^\s]+", url):
            return (
                f"{name}: {url!r}: a probe reads http:// or https:// URLs only "
                "(other schemes can send arbitrary bytes, @ reads a file)"
            )
        if any(c in url for c in "[]{}"):
            return (
                f"{name}: {url!r}: [ ] and {{ }} make curl fetch many URLs (globbing); "
                "a probe reads one (percent-encode them)"
            )
    return None


def _exact(*forms: tuple[str, ...]) -> Rule:
    allowed = {tuple(f) for f in forms}

    def rule(name: str, args: Sequence[str]) -> str | None:
        if tuple(args) in allowed:
            return None
        shown = " | ".join(" ".join(f) for f in sorted(allowed))
        return f"{name}: {' '.join(args)!r}: a probe runs only the configuration test ({shown})"

    return rule


def _needs(*options: str) -> Callable[[str, Parsed], str | None]:
    def then(name: str, parsed: Parsed) -> str | None:
        if not _has(parsed, *options):
            return f"{name}: a probe runs only the check mode ({' or '.join(options)})"
        return None

    return then


def _no_operands(then: Callable[[str, Parsed], str | None]) -> Callable[[str, Parsed], str | None]:
    def wrapped(name: str, parsed: Parsed) -> str | None:
        if parsed.operands:
            return f"{name}: {parsed.operands[0]!r}: no operand is allowed"
        return then(name, parsed)

    return wrapped


_DEVICES = "reading devices can act on them"
_FOLLOW = "following would not end; read once"

RULES: Mapping[str, Rule] = {
    **{n: _any for n in (
        "test", "[", "true", "false", "cat", "head", "wc", "stat", "ls", "readlink",
        "realpath", "id", "getent", "whoami", "uname", "df", "lsblk", "ps", "pgrep",
        "pidof", "which", "sha256sum", "sha1sum", "md5sum", "cmp", "jq", "nproc",
        "uptime", "lscpu",
    )},
    **{
        n: _refuse_options(
            "DdrR",
            ("devices", "directories", "recursive", "dereference-recursive"),
            "-D reads devices, and a recursive grep reaches files whose read acts "
            "(/proc/kmsg, trace_pipe, device registers under /sys); name the files",
        )
        for n in ("grep", "egrep", "fgrep")
    },
    "findmnt": _refuse_options(
        "pF", ("poll", "tab-file"), "-p would not end, -F opens the file it names"
    ),
    "free": _refuse_options("sc", ("seconds", "count"), "repeating would not end; read once"),
    "diff": _refuse_options(
        "rN",
        ("recursive", "new-file", "unidirectional-new-file"),
        "a recursive diff reaches files whose read acts (/proc/kmsg, trace_pipe, /sys); "
        "name the files",
    ),
    "ss": _refuse_options(
        "KDE", ("kill", "diag", "events"),
        "-K kills sockets, -D writes a file, -E would not end",
    ),
    "journalctl": _no_globs(_refuse_options(
        "fi",
        ("follow", "vacuum-size", "vacuum-time", "vacuum-files", "rotate", "flush", "sync",
         "setup-keys", "update-catalog", "relinquish-var", "smart-relinquish-var",
         "cursor-file", "image", "file"),
        "a probe reads the journal once and changes nothing of it (--file opens what its "
        "pattern matches, devices too: read a journal folder with -D)",
        exact=("cursor",),
    )),
    "tail": _tail,
    "date": _date,
    "hostname": _hostname,
    "ping": _grammar_rule(_PING, _ping_then),
    "timedatectl": _verb_rule(_TIMEDATECTL, ("status", "show"), True, takes_operands=False),
    "hostnamectl": _verb_rule(_HOSTNAMECTL, ("status",), True, takes_operands=False),
    "systemctl": _verb_rule(_SYSTEMCTL, SYSTEMCTL_VERBS, False),
    "ip": _ip,
    "sysctl": _grammar_rule(_SYSCTL, _sysctl_then),
    "nft": _grammar_rule(_NFT, _nft_then),
    "iptables": _grammar_rule(_IPTABLES, _iptables_then),
    "ip6tables": _grammar_rule(_IPTABLES, _iptables_then),
    "dpkg": _grammar_rule(_DPKG, _one_action(_DPKG_ACTIONS)),
    "dpkg-query": _grammar_rule(_DPKG_QUERY, _one_action(_DPKG_QUERY_ACTIONS)),
    "rpm": _rpm,
    "apt-cache": _verb_rule(_APT_CACHE, _APT_CACHE_VERBS, False),
    "curl": _grammar_rule(_CURL, _curl_then),
    "nginx": _grammar_rule(
        Grammar(flags=_flags("-t", "-T", "-q")), _no_operands(_needs("-t", "-T"))
    ),
    # Only the node's own configuration: a file named in the argv could load a plugin.
    "named-checkconf": _grammar_rule(
        Grammar(flags=_flags("-z", "-j", "-p", "-x", "-l")), _no_operands(lambda n, p: None)
    ),
    "apachectl": _exact(("-t",), ("configtest",)),
    "apache2ctl": _exact(("-t",), ("configtest",)),
    "sshd": _grammar_rule(Grammar(flags=_flags("-t", "-T")), _no_operands(_needs("-t", "-T"))),
    "visudo": _grammar_rule(
        Grammar(
            flags=_flags("-c", "--check", "-q", "--quiet", "-s", "--strict"),
            values={"-f": _anything, "--file": _anything},
        ),
        _needs("-c", "--check"),
    ),
}  # fmt: skip
