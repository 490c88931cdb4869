"""Every fenced shell and Python block of README.md and docs/*.md is checked, so no page can go
stale.

- ```python / ```py blocks compile; a block right after a ``<!-- run -->`` line also runs, in a
  subprocess from the repository root (keep such blocks tiny: CPU, seconds).
- ```bash / ```sh / ```shell / ```console blocks (console: only the ``$ `` lines): every command
  line is split like a shell does (shlex). A ``tools/X.py`` invocation (after ``python`` or
  ``torchrun``) needs tools/X.py, and every ``--flag`` it uses must appear in
  ``python tools/X.py [SUBCOMMAND] --help``. A tool given ``--config-file configs/...`` also
  loads that config with the command's KEY VALUE overrides and validates it
  (``bridle.config.load_config`` + ``validate_config``), so a renamed key breaks this test; for
  ``train_net.py`` the arguments go through its own parser first. ``make X`` needs target X in
  the Makefile. Other commands (pip, pytest, sbatch, ...) only have to split.
- ```yaml blocks parse.
"""

import contextlib
import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
from typing import Dict, List, NamedTuple, Tuple

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PYTHON_LANGS = {"python", "py"}
RUN_MARK = "<!-- run -->"
_OPERATORS = {"|", "||", "&&", ";", "&"}
_REDIRECTS = {">", ">>", "<", ">&", "<&"}
_TOOL = re.compile(r"^tools/(\w+)\.py$")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


class Block(NamedTuple):
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    body: str
    run: bool  # preceded by RUN_MARK

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(page: str) -> List[Block]:
    lines = open(os.path.join(REPO, page), encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith("```"):
            i += 1
            continue
        lang = stripped[3:].strip().split(" ")[0].lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        out.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : j]) + "\n", previous == RUN_MARK))
        i = j + 1
    return out


BLOCKS = [b for page in PAGES for b in _blocks(page)]


def _command_lines(block: Block) -> List[str]:
    """The block's commands, continuation lines joined, comment-only lines dropped."""
    raw = block.body.split("\n")
    if block.lang == "console":
        raw = [line[2:] for line in raw if line.startswith("$ ")]
    commands, current = [], ""
    for line in raw:
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        commands.append(current)
        current = ""
    if current:
        commands.append(current)
    return commands


def _segments(command: str) -> List[List[str]]:
    """The simple commands of a line (split at | && ; ...), redirections dropped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments, words, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in _OPERATORS:
            segments.append(words)
            words = []
        elif token in _REDIRECTS:
            skip_next = True
            if words and words[-1].isdigit():  # the "2" of 2>/dev/null
                words.pop()
        else:
            words.append(token)
    segments.append(words)
    return [s for s in segments if s]


class ToolCall(NamedTuple):
    where: str
    tool: str  # "train_net" for tools/train_net.py
    args: List[str]


def _tool_call(words: List[str], where: str):
    for k, word in enumerate(words):
        m = _TOOL.match(word)
        if m:
            return ToolCall(where, m.group(1), words[k + 1 :])
    return None


SHELL_BLOCKS = [b for b in BLOCKS if b.lang in SHELL_LANGS]
SEGMENTS: List[Tuple[str, List[str]]] = []
for _block in SHELL_BLOCKS:
    for _command in _command_lines(_block):
        try:
            for _words in _segments(_command):
                SEGMENTS.append((_block.where, _words))
        except ValueError:  # reported by test_shell_commands_split
            pass
TOOL_CALLS = [c for where, words in SEGMENTS for c in [_tool_call(words, where)] if c is not None]


# Runs in one child process, so torch and the plugins are imported once for all tools: each tool
# runs as a script (``runpy``, run_name "__main__") with ``--help``, as ``python tools/X.py --help``
# would; then, for a tool with sub-commands, ``X.py SUB --help`` for the SUBs the pages use.
_HELP_RUNNER = r"""
import contextlib, io, json, re, runpy, sys, traceback

def helptext(argv):
    buf = io.StringIO()
    sys.argv = list(argv) + ["--help"]
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            return "<" + " ".join(argv) + " --help exited " + str(e.code) + ": " + buf.getvalue()[-800:] + ">"
    except BaseException:
        return "<" + " ".join(argv) + " --help failed: " + traceback.format_exc()[-1500:] + ">"
    return buf.getvalue()

wanted = json.loads(sys.stdin.read())
out = {}
for tool, firsts in wanted.items():
    text = out[tool] = helptext(["tools/" + tool + ".py"])
    m = re.search(r"\{([\w,-]+)\}\s+\.\.\.", text.split("\n\n", 1)[0])
    for sub in firsts:
        if m and sub in m.group(1).split(","):
            out[tool + " " + sub] = helptext(["tools/" + tool + ".py", sub])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def help_texts() -> Dict[str, str]:
    """`--help` of every tool the pages call ("X"), and of the sub-commands they use ("X SUB")."""
    wanted: Dict[str, set] = {}
    for c in TOOL_CALLS:
        if os.path.isfile(os.path.join(REPO, "tools", f"{c.tool}.py")):
            wanted.setdefault(c.tool, set()).update(c.args[:1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-c", _HELP_RUNNER],
        input=json.dumps({k: sorted(v) for k, v in wanted.items()}),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, f"the --help runner failed:\n{p.stderr[-4000:]}"
    return json.loads(p.stdout.strip().split("\n")[-1])


def _config_keys():
    from bridle.config import get_cfg

    def flat(node, prefix=""):
        for k, v in node.items():
            if hasattr(v, "items"):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    return set(flat(get_cfg()))


def _trailing_opts(args: List[str], keys) -> List[str]:
    """The longest tail of ``args`` made of KEY VALUE pairs with known keys (config overrides)."""
    for start in range(len(args)):
        tail = args[start:]
        if len(tail) % 2 == 0 and all(tail[i] in keys for i in range(0, len(tail), 2)):
            return tail
    return []


def _config_of(call: ToolCall, keys) -> Tuple[str, List[str]]:
    """(config file, overrides) of a tool call; ("", []) when it names no config of the repo."""
    if call.tool == "train_net":
        from bridle.engine import default_argument_parser

        try:
            with contextlib.redirect_stderr(io.StringIO()) as err:
                args = default_argument_parser().parse_args(call.args)
        except SystemExit:
            raise ValueError(f"train_net.py's parser rejects {call.args}: {err.getvalue().strip()[-300:]}")
        config_file, opts = args.config_file, list(args.opts or [])
    else:
        config_file = next(
            (
                a.split("=", 1)[1] if "=" in a else call.args[k + 1]
                for k, a in enumerate(call.args[:-1] + [""])
                if a == "--config-file" or a.startswith("--config-file=")
            ),
            "",
        )
        opts = _trailing_opts(call.args, keys)
    if not config_file.startswith("configs/"):
        return "", []  # a file the page writes itself (a plugin's), or none
    return config_file, opts


def test_pages_have_checked_blocks():
    assert "README.md" in PAGES and len(PAGES) > 1
    assert any(b.lang in SHELL_LANGS for b in BLOCKS) and any(b.lang in PYTHON_LANGS for b in BLOCKS)
    assert any(b.run for b in BLOCKS), f"no block marked {RUN_MARK}"
    assert TOOL_CALLS, "no tools/X.py command found"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in PYTHON_LANGS], ids=lambda b: b.where)
def test_python_blocks_compile(block):
    compile(block.body, block.where, "exec")


def test_run_marks_precede_python_blocks():
    for page in PAGES:
        lines = open(os.path.join(REPO, page), encoding="utf-8").read().split("\n")
        marked = {b.line for b in BLOCKS if b.page == page and b.run}
        for i, line in enumerate(lines):
            if line.strip() == RUN_MARK:
                nxt = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), None)
                assert nxt is not None and nxt + 1 in marked, f"{page}:{i + 1}: {RUN_MARK} not before a block"
    for b in BLOCKS:
        assert not b.run or b.lang in PYTHON_LANGS, f"{b.where}: only Python blocks run"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.run], ids=lambda b: b.where)
def test_runnable_python_blocks_run(block, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", BRIDLE_DOCS_TMP=str(tmp_path))
    p = subprocess.run(
        [sys.executable, "-c", block.body], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, f"{block.where} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("yaml", "yml")], ids=lambda b: b.where)
def test_yaml_blocks_parse(block):
    yaml.safe_load(block.body)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_shell_commands_split(block):
    commands = _command_lines(block)
    assert commands, f"{block.where}: an empty shell block"
    for command in commands:
        try:
            _segments(command)
        except ValueError as e:
            pytest.fail(f"{block.where}: {command!r} does not split like a shell command: {e}")


def test_make_targets_exist():
    makefile = open(os.path.join(REPO, "Makefile")).read()
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile, re.M))
    for where, words in SEGMENTS:
        if words[0] == "make":
            for target in [w for w in words[1:] if not w.startswith("-") and "=" not in w]:
                assert target in targets, f"{where}: make {target}: no such Makefile target ({sorted(targets)})"


def test_tool_commands_match_the_tools(help_texts):
    problems = []
    for call in TOOL_CALLS:
        if not os.path.isfile(os.path.join(REPO, "tools", f"{call.tool}.py")):
            problems.append(f"{call.where}: tools/{call.tool}.py does not exist")
            continue
        sub = f"{call.tool} {call.args[0]}" if call.args else ""
        text = help_texts[sub if sub in help_texts else call.tool]
        if text.startswith("<"):
            if text not in problems:  # once per tool
                problems.append(text)
            continue
        for arg in call.args:
            flag = arg.split("=", 1)[0]
            if flag.startswith("--") and flag != "--" and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                problems.append(f"{call.where}: tools/{call.tool}.py has no option {flag} (see its --help)")
    assert not problems, "\n".join(problems)


def test_documented_configs_load_and_validate():
    from bridle.config import load_config
    from bridle.config.validate import validate_config

    keys = _config_keys()
    problems, checked = [], 0
    for call in TOOL_CALLS:
        if not os.path.isfile(os.path.join(REPO, "tools", f"{call.tool}.py")):
            continue  # reported by test_tool_commands_match_the_tools
        try:
            config_file, opts = _config_of(call, keys)
            if not config_file:
                continue
            validate_config(load_config(os.path.join(REPO, config_file), opts))
            checked += 1
        except Exception as e:  # a missing file, an unknown key, a bad value: all stale docs
            problems.append(f"{call.where}: {' '.join(call.args)}: {type(e).__name__}: {e}")
    assert not problems, "\n".join(problems)
    assert checked, "no documented command names a config of the repository"
