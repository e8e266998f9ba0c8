"""HTCondor's argument and environment syntaxes (condor_arglist.cpp, env.cpp).

Manual, "condor_submit" -> arguments: the new syntax is surrounded by double quotes,
arguments are separated by whitespace, single quotes group an argument and a repeated
quote ('' or "") stands for a literal one.  The old syntax (no surrounding double quotes)
splits on whitespace and a backslash-escaped double quote is a literal double quote.
environment: new syntax "NAME=value NAME2='a b'" (same quoting), old syntax NAME=v;NAME2=w.
"""

from __future__ import annotations


class ArgError(ValueError):
    """The arguments or environment string is malformed (message as HTCondor prints it)."""


def is_v2_quoted(text: str) -> bool:
    return text.lstrip().startswith('"')


def v2_quoted_to_raw(text: str) -> str:
    s = text.lstrip()
    assert s.startswith('"')
    i, out = 1, []
    terminated = -1
    while i < len(s):
        c = s[i]
        if c == '"':
            if i + 1 < len(s) and s[i + 1] == '"':
                out.append('"')
                i += 2
                continue
            terminated = i
            i += 1
            break
        out.append(c)
        i += 1
    if terminated < 0:
        raise ArgError("Unterminated double-quote.")
    rest = s[i:]
    if rest.strip():
        raise ArgError("Unexpected characters following double-quote.  Did you forget to escape "
                       "the double-quote by repeating it?  Here is the quote and trailing "
                       f"characters: {s[terminated:]}\n")
    return "".join(out)


def split_args(raw: str) -> list[str]:
    """V2 raw split: whitespace separates, '...' groups, '' inside quotes is a quote."""
    args: list[str] = []
    buf: list[str] = []
    parsed = False
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "'":
            start = i
            i += 1
            parsed = True
            while True:
                if i >= n:
                    raise ArgError(f"Unbalanced quote starting here: {raw[start:]}")
                if raw[i] == "'":
                    if i + 1 < n and raw[i + 1] == "'":
                        buf.append("'")
                        i += 2
                        continue
                    break
                buf.append(raw[i])
                i += 1
            i += 1
        elif c in " \t\n\r":
            i += 1
            if parsed:
                args.append("".join(buf))
                buf, parsed = [], False
        else:
            buf.append(c)
            parsed = True
            i += 1
    if parsed:
        args.append("".join(buf))
    return args


def append_arg(arg: str, result: str) -> str:
    out = list(result)
    if out:
        out.append(" ")
    if not arg:
        out.append("''")
    for c in arg:
        if c in " \t\n\r'":
            if out and out[-1] == "'":
                out.pop()
            else:
                out.append("'")
            if c == "'":
                out.append("'")
            out.append(c)
            out.append("'")
        else:
            out.append(c)
    return "".join(out)


def join_args(args: list[str]) -> str:
    result = ""
    for a in args:
        result = append_arg(a, result)
    return result


def v1_wacked_to_raw(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            raise ArgError(f"Found illegal unescaped double-quote: {text[i:]}")
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == '"':
            out.append('"')
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def parse_arguments(text: str) -> tuple[list[str], bool]:
    """Submit `arguments` value -> (argv, input_was_v1)."""
    if is_v2_quoted(text):
        return split_args(v2_quoted_to_raw(text)), False
    return v1_wacked_to_raw(text).split(), True


def parse_environment(text: str) -> dict[str, str]:
    """Submit `environment` value -> {name: value} (V2 quoted or V1 ';'-delimited)."""
    env: dict[str, str] = {}
    if is_v2_quoted(text):
        entries = split_args(v2_quoted_to_raw(text))
    else:
        body = text
        delim = ";"
        if body and body[0] in ";|":
            delim, body = body[0], body[1:]
        entries = [e.lstrip(" \t\r\n") for e in body.replace("\n", delim).split(delim)]
        entries = [e for e in entries if e]
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep:
            raise ArgError(f"ERROR: Missing '=' after environment variable '{entry}'.")
        if not name:
            raise ArgError(f"ERROR: missing variable in '{entry}'.")
        env[name] = value
    return env


def environment_v2_raw(env: dict[str, str]) -> str:
    """What HTCondor stores in the job's Environment attribute (names sorted, like std::map)."""
    return join_args([f"{k}={env[k]}" for k in sorted(env, key=lambda s: s.encode())])


def environment_from_v2_raw(raw: str) -> dict[str, str]:
    """The job's Environment attribute -> {name: value}."""
    env: dict[str, str] = {}
    for entry in split_args(raw):
        name, sep, value = entry.partition("=")
        if name and sep:
            env[name] = value
    return env
