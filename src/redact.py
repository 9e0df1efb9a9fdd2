"""What is never recorded nor shown: secrets, wherever they would appear. A value is
secret by its key (a name that says credential), by where it came from (an environment
variable that a config reads, `${oc.env:NAME}` whatever NAME is, or one whose name says
credential), or by its shape (the password of a URI, a token of a known kind).

Every param, tag, config.yaml and overrides.txt that triad writes about a config or a
command line passes here; Hydra's own files of a job are rewritten through it as the job
starts (rewrite_hydra_files); and once mask_output has run, so is every line the process
prints or logs.
"""

import functools
import logging
import os
import re
import sys
import threading
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

MASK = "***"
# A key names a credential when one of its dotted parts, read in lower case without
# separators ("db_password", "dbPassword", "MY_API_TOKEN" -> "myapitoken"), contains
# one of CONTAINS or ends with one of ENDS. Plurals of ENDS are left alone on purpose:
# triad's own `num_tokens` and `keys` are counts and lists, and `tokenizer` names a
# codec; `pwd` is left out because $PWD is the working directory, not a secret.
CONTAINS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey", "accesskey")
ENDS = ("token", "key", "creds")
# Shorter values are too likely to occur by chance to be searched for in text, and so
# are the words a flag variable holds (MY_KEY=true).
MIN_SECRET_LENGTH = 4
NOT_SECRET_VALUES = ("true", "false", "none", "null")
# The environment variables the shipped configs read for what is no secret: where the
# store is (conf/logger/*.yaml). The password of a URI in it is masked as any URI's.
NOT_SECRET_ENV = ("MLFLOW_TRACKING_URI",)

# A URI's password (RFC 3986 userinfo): scheme://user:password@host -> scheme://user:***@host;
# also as a sweep's job has it, its ':' escaped by Hydra (postgresql\://u\:pw@h).
URI_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*\\?://[^\s:/?#@\\]*\\?:)([^\s/?#]*)(@)")
# What Hydra escapes in the overrides it hands a sweep's jobs (hydra.core.override_parser).
_HYDRA_ESCAPED = re.compile(r"([\\()\[\]{}:=, \t])")
# Tokens of known kinds, as gitleaks finds them (github.com/gitleaks/gitleaks,
# config/gitleaks.toml; its rule ids below): (prefix, rest). A masked token keeps its
# prefix, so that it still says what it was (hf_***).
TOKEN_SHAPES = (
    (r"gh[pousr]_", r"[0-9A-Za-z]{36}"),  # github-pat, github-oauth, github-app-token, github-refresh-token
    (r"github_pat_", r"\w{82}"),  # github-fine-grained-pat
    (r"hf_", r"[A-Za-z]{34}"),  # huggingface-access-token
    (r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)", r"[A-Z2-7]{16}"),  # aws-access-token
    # openai-api-key (sk-, sk-proj-...) and anthropic-api-key (sk-ant-api03-...), whose keys are
    # all far longer than 32 characters: any sk- with 32 or more is taken for one.
    (r"sk-", r"[A-Za-z0-9_\-]{32,}"),
    (r"eyJ", r"[A-Za-z0-9_\-]{17,}\.eyJ[A-Za-z0-9_\-]{17,}\.[A-Za-z0-9_\-]*"),  # jwt: header.payload.signature
)
_TOKENS = [re.compile(rf"\b({prefix}){rest}(?![\w\-])") for prefix, rest in TOKEN_SHAPES]
# `key=value` in text (a command line, Hydra's override_dirname, a message): the value of a
# secret key, up to a space or a comma that Hydra did not escape.
_KEY_VALUE = re.compile(r"([\w.\-+~/]+)=((?:\\.|[^\s,\\])*)")
# Keys inside an override's value: `db={password: x}` sets db.password.
_INNER_KEY = re.compile(r"([\w.\-]+)\s*:")
_INNER_VALUE = re.compile(r"([\w.\-]+)\s*:\s*('[^']*'|\"[^\"]*\"|[^,}\]\s]+)")
# What a config reads from the environment: ${oc.env:NAME} and ${oc.env:NAME,default} (and
# as Hydra escapes them for a sweep's jobs, $\{oc.env\:NAME\}).
_ENV_READ = re.compile(r"\$\\?\{oc\.env\\?:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# What this process has learned to mask (learn): values under secret keys, and the names
# of the environment variables its configs read.
_learned: set[str] = set()
_env_read: set[str] = set()


@functools.lru_cache(maxsize=4096)
def is_secret(name: str) -> bool:
    """Whether a key (dotted, with or without +/~ of an override) or an environment
    variable's name looks like it holds a credential."""
    for part in re.split(r"[./]", name.lstrip("+~")):
        word = re.sub(r"[_\-\s]", "", part).lower()
        if any(w in word for w in CONTAINS) or word.endswith(ENDS):
            return True
    return False


def _maskable(value: str) -> bool:
    return len(value) >= MIN_SECRET_LENGTH and value.lower() not in NOT_SECRET_VALUES and value != MASK


def secret_values() -> list[str]:
    """The values masked wherever they occur: those of the environment variables whose
    names look secret or that a config read (`+api=${oc.env:ANY_NAME}`), and those learned
    under secret keys."""
    env = [v for k, v in os.environ.items() if is_secret(k) or (k in _env_read and k not in NOT_SECRET_ENV)]
    return [v for v in {*env, *_learned} if _maskable(v)]


@functools.lru_cache(maxsize=64)
def _known(values: frozenset[str]) -> re.Pattern | None:
    """One pattern for the known values, each also as Hydra escapes it in a sweep's overrides,
    longest first (a value inside another is masked with it)."""
    forms = values | {_HYDRA_ESCAPED.sub(r"\\\1", v) for v in values}
    return re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True))) if values else None


def text(value) -> str:
    """Text with every secret in it masked: the known secret values, the value of a secret
    key (`api_key=...`), the password of a URI, tokens of known kinds."""
    masked = str(value)
    if (known := _known(frozenset(secret_values()))) is not None:
        masked = known.sub(MASK, masked)
    masked = URI_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", masked)
    masked = _KEY_VALUE.sub(lambda m: f"{m[1]}={MASK}" if m[2] and is_secret(m[1]) else m[0], masked)
    for shape in _TOKENS:
        masked = shape.sub(lambda m: m[1] + MASK, masked)
    return masked


def holds_secret(value) -> bool:
    """Whether text() would mask anything in a value."""
    return text(value) != str(value)


def learn(source) -> None:
    """Remember, for text() to mask wherever they show, the values that a config (Hydra's
    node included) or a command line (a list of overrides) holds under secret keys, and the
    environment variables it reads (`${oc.env:NAME}`)."""
    if isinstance(source, DictConfig):
        _env_read.update(_ENV_READ.findall(OmegaConf.to_yaml(source)))  # as typed: the interpolations
        for key in source:
            _learn_leaves(_resolved(source, key), is_secret(str(key)))
        return
    for line in source:
        line = str(line)
        _env_read.update(_ENV_READ.findall(line))
        key, sep, value = line.partition("=")
        if sep and is_secret(key):
            _learned.add(value.strip("'\""))
        for inner, inner_value in _INNER_VALUE.findall(value):
            if is_secret(inner):
                _learned.add(inner_value.strip("'\""))


def _resolved(cfg: DictConfig, key):
    """One top-level section, resolved where it can be (Hydra's callbacks turn an error into a
    warning: one section that cannot be resolved must not stop the rest from being learned)."""
    try:
        return OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
    except Exception:
        return OmegaConf.to_container(cfg, resolve=False).get(key)


def _learn_leaves(value, secret: bool) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _learn_leaves(inner, secret or is_secret(str(key)))
    elif isinstance(value, list):
        for inner in value:
            _learn_leaves(inner, secret)
    elif secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        _learned.add(str(value))


def _values_read(cfg: DictConfig) -> list[str]:
    """The values of the environment variables this config reads."""
    names = set(_ENV_READ.findall(OmegaConf.to_yaml(cfg))) - set(NOT_SECRET_ENV)
    return sorted((v for n in names if _maskable(v := os.environ.get(n, ""))), key=len, reverse=True)


def reads_environment(value: str) -> bool:
    """Whether a value, as typed, reads an environment variable (one of NOT_SECRET_ENV aside)."""
    return any(name not in NOT_SECRET_ENV for name in _ENV_READ.findall(value))


def _scrub(value, read: list[str] = ()):
    """A config as plain containers with secrets masked: under secret keys all of it, in
    lists each item as an override (`+db.password=***`), a value that reads the environment
    as typed (`${oc.env:NAME}`) or that holds a value `read` from it, and in other text
    what text() masks."""
    if isinstance(value, dict):
        return {k: MASK if is_secret(str(k)) else _scrub(v, read) for k, v in value.items()}
    if isinstance(value, list):
        return [override(_unread(v, read)) if isinstance(v, str) else _scrub(v, read) for v in value]
    if isinstance(value, str):
        return MASK if reads_environment(value) else text(_unread(value, read))
    return value


def _unread(value: str, read: list[str]) -> str:
    for secret in read:
        value = value.replace(secret, MASK)
    return value


def config(cfg: DictConfig) -> dict:
    """The resolved config as plain containers, secrets masked (what is secret: the module's
    docstring); a value read from the environment is MASK wherever it shows."""
    return _scrub(OmegaConf.to_container(cfg, resolve=True), _values_read(cfg))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, secrets masked."""
    return OmegaConf.to_yaml(config(cfg))


def entries(values: dict) -> dict[str, str]:
    """Params or tags without the entries whose key is secret, secrets in the values masked."""
    return {k: text(v) for k, v in values.items() if not is_secret(str(k))}


def override(line: str) -> str:
    """One command-line override with its value masked when the key or a key inside the
    value is secret (`+db.password=***`, `+db=***` for `+db={password: x}`) or the value
    reads the environment (`+api=${oc.env:NAME}`), and any secret in it masked (text).
    Reading Hydra's list resolves `${oc.env:...}`, so a plain key may hold an environment
    value: learn() has named the variable."""
    key, sep, value = line.partition("=")
    if sep and (is_secret(key) or reads_environment(value) or any(is_secret(k) for k in _INNER_KEY.findall(value))):
        return f"{text(key)}={MASK}"
    return text(line)


def overrides(lines: list[str]) -> list[str]:
    return [override(line) for line in lines]


# ---------------------------------------------------------------- Hydra's files

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def rewrite_hydra_files(config: DictConfig) -> None:
    """Rewrite, secrets masked, the files Hydra has just written for this job (in its output
    folder's .hydra/: the config and overrides as typed, and Hydra's own config) and, in a
    sweep, the sweep's multirun.yaml; Hydra writes them all before a job's on_job_start
    (src/sweep.py calls this there), and the sweepers write multirun.yaml before any job.
    As in config.yaml, a `${oc.env:NAME}` is MASK: src.eval builds from what was recorded,
    and reads no secret again. Call mask_output(config) first: what the config holds is
    then known to text()."""
    output_dir = OmegaConf.select(config, "hydra.runtime.output_dir")
    subdir = OmegaConf.select(config, "hydra.output_subdir")
    files = [Path(output_dir, subdir, name) for name in HYDRA_FILES] if output_dir and subdir else []
    try:
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
    except Exception:  # a single run's sweep.dir need not resolve
        sweep_dir = None
    if sweep_dir:
        files.append(Path(sweep_dir) / "multirun.yaml")
    for path in files:
        if path.is_file():
            _rewrite(path)


def _rewrite(path: Path) -> None:
    written = path.read_text()
    masked = OmegaConf.to_yaml(OmegaConf.create(_scrub(OmegaConf.to_container(OmegaConf.load(path)))))
    if masked != written:  # a new file renamed into place: a reader never sees half of it
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(masked)
        os.replace(partial, path)


# ---------------------------------------------------------------- the process's output


class MaskedStream:
    """A text stream that passes what is written to `stream` with its secrets masked, a
    line at a time (also up to a carriage return: progress bars), so that a secret written
    in pieces is whole when it is masked; flush() passes on the rest. A line whose secret
    only shows without its colour codes loses its colours."""

    def __init__(self, stream):
        self.stream, self._pending, self._lock = stream, "", threading.Lock()

    def write(self, data: str) -> int:
        with self._lock:
            self._pending += data
            end = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
            if end:
                self.stream.write(_masked(self._pending[:end]))
                self._pending = self._pending[end:]
        return len(data)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.stream.write(_masked(self._pending))
                self._pending = ""
        self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self.stream, name)


def _masked(chunk: str) -> str:
    if "\x1b[" in chunk and holds_secret(plain := _ANSI.sub("", chunk)):
        return text(plain)
    return text(chunk)


def _masking(make_record):
    """A log record factory that masks each record's message and traceback as it is made,
    whatever handler writes it later (the console, Hydra's <job>.log)."""

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # logging reports a bad format itself, when the record is written
            return record
        record.msg, record.args = text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = text(record.stack_info)
        return record

    factory.masks = True
    return factory


def mask_output(source=()) -> None:
    """From now on, mask secrets (text) in every line this process prints (sys.stdout,
    sys.stderr) or logs; first learn what `source` (the command line, or a job's config)
    holds. Idempotent: the entry points call it first, and each job again (a launcher's
    worker process too)."""
    learn(source)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))
    if not getattr(logging.getLogRecordFactory(), "masks", False):
        logging.setLogRecordFactory(_masking(logging.getLogRecordFactory()))

