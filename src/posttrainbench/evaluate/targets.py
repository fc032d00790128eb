"""What `ptb eval` and `ptb baseline` evaluate: a model folder or a hub id, with its family.

A hub id is read from the local hub cache (never downloaded here). The template family comes
from the catalog: a base model's own entry, or the base model whose instruct twin it is; any
other model needs `--base-model` or `--template-family`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from posttrainbench.catalog import MODELS
from posttrainbench.catalog.models import BaseModelInfo
from posttrainbench.errors import ConfigError, ModelUnavailableError


class Target(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    key: str  # the model's row in baseline tables (repo name without owner, or folder name)
    family: str


def catalog_entry(name: str) -> tuple[BaseModelInfo, str | None] | None:
    """(entry, the instruct twin's hub id if it is the one named) for a base model or an
    instruct twin named by id or short key."""
    for _, m in MODELS:
        if name in (m.name, m.hf_id, m.baseline_key):
            return m, None
        if m.instruct and name in (m.instruct, m.instruct_key):
            return m, m.instruct
    return None


def hub_model(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    from posttrainbench.config import hub_cache

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hub_cache()))
    except Exception as exc:
        raise ModelUnavailableError(
            f"{repo_id} is not in the local Hugging Face cache",
            f"run `ptb data prefetch --models {repo_id}` (or `hf download {repo_id}`) where "
            "there is network",
        ) from exc


def resolve(
    model: str,
    *,
    base_model: str | None = None,
    template_family: str | None = None,
    models_root: Path | None = None,
) -> Target:
    entry = catalog_entry(base_model or model)
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a model folder (no config.json)")
        key = path.resolve().name
    elif entry is not None and not base_model:
        info, instruct = entry
        if instruct is not None:
            path, key = hub_model(instruct), info.instruct_key or model
        else:
            path = info.locate(models_root or Path("."))
            key = info.baseline_key
    elif "/" in model:
        path, key = hub_model(model), model.rsplit("/", 1)[-1]
    else:
        raise ConfigError(
            f"{model!r} is neither a model folder nor a hub id",
            "pass a folder holding config.json, or ORG/NAME of a model in the hub cache",
        )
    family = template_family or (entry[0].template_family if entry else None)
    if family is None:
        raise ConfigError(
            f"no template family known for {model}",
            "pass --base-model (the model it was trained from) or --template-family",
        )
    return Target(path=path.resolve(), key=key, family=family)
