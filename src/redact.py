"""What is never recorded: values under keys that name a credential, and values of
environment variables whose names do. Every param, tag, config.yaml and
overrides.txt that triad writes about a config or a command line passes here.
"""

import os
import re

from omegaconf import DictConfig, OmegaConf

MASK = "***"
# A key names a credential when one of its dotted parts, read in lower case without
# separators ("db_password", "dbPassword", "MY_API_TOKEN" -> "myapitoken"), contains
# one of CONTAINS or ends with one of ENDS. Plurals of ENDS are left alone on purpose:
# triad's own `num_tokens` and `keys` are counts and lists, and `tokenizer` names a
# codec; `pwd` is left out because $PWD is the working directory, not a secret.
CONTAINS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey", "accesskey")
ENDS = ("token", "key", "creds")
# Shorter environment values are too likely to occur by chance to be searched for.
MIN_SECRET_LENGTH = 4


def is_secret(name: str) -> bool:
    """Whether a key (dotted, with or without +/~ of an override) or an environment
    variable's name looks like it holds a credential."""
    for part in re.split(r"[./]", name.lstrip("+~")):
        word = re.sub(r"[_\-\s]", "", part).lower()
        if any(w in word for w in CONTAINS) or word.endswith(ENDS):
            return True
    return False


def secret_values() -> list[str]:
    """Values of the environment variables whose names look secret: a config may
    read one under a plain key (`+api=${oc.env:MY_TOKEN}`)."""
    return [v for k, v in os.environ.items() if is_secret(k) and len(v) >= MIN_SECRET_LENGTH]


def holds_secret(value) -> bool:
    """Whether a value contains the value of a secret-looking environment variable."""
    text = str(value)
    return any(secret in text for secret in secret_values())


def config(cfg: DictConfig) -> dict:
    """The resolved config as plain containers, secret values replaced by MASK."""
    def scrub(value):
        if isinstance(value, dict):
            return {k: MASK if is_secret(str(k)) else scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return MASK if isinstance(value, str) and holds_secret(value) else value

    return scrub(OmegaConf.to_container(cfg, resolve=True))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, secret values replaced by MASK."""
    return OmegaConf.to_yaml(config(cfg))


def entries(values: dict) -> dict[str, str]:
    """Params or tags without the entries whose key or value is secret."""
    return {k: str(v) for k, v in values.items() if not is_secret(str(k)) and not holds_secret(v)}


# Keys inside an override's value: `db={password: x}` sets db.password.
_INNER_KEY = re.compile(r"([\w.\-]+)\s*:")


def override(line: str) -> str:
    """One command-line override with its value masked when the key, a key inside
    the value, or the value itself is secret (`+db.password=***`). Reading Hydra's
    list resolves `${oc.env:...}`, so a plain key may hold an environment value."""
    key, sep, value = line.partition("=")
    if holds_secret(key):
        return MASK
    secret = is_secret(key) or any(is_secret(k) for k in _INNER_KEY.findall(value)) or holds_secret(line)
    return f"{key}{sep}{MASK}" if secret and sep else (MASK if secret else line)


def overrides(lines: list[str]) -> list[str]:
    return [override(line) for line in lines]
