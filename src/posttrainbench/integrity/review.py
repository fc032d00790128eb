"""Human review: a signed override beside the verdict (`ptb review RUN --decision … --why …`).

The review names who decided, when, why, the exact verdict.json it read (its sha256), the run
(its id) and the run's spec (the sha256 of its canonical JSON); it is signed with HMAC-SHA256 by a
key kept in the reviewer's cache (`<cache>/secrets/review.key`, 0600, created on first use), so an
edited review no longer verifies, nor one copied to another run (even with an identical verdict)
or kept over a spec edited since. A review signed before the run and spec were bound (no
`run_id`) never verifies: it is kept as history and ignored. Verdict files are never edited; a
re-judged run whose verdict changed drops the review (the file stays as history).
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import socket
from pathlib import Path

from posttrainbench.errors import ConfigError
from posttrainbench.records import Decision, Review, RunSpec, now

KEY_FILE = Path("secrets") / "review.key"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_digest(spec: RunSpec) -> str:
    """sha256 of the spec's canonical JSON (sorted keys, no whitespace, defaults and the schema
    version left out, so a ptb that only adds fields with defaults keeps old reviews valid)."""
    fields = spec.model_dump(mode="json", exclude_defaults=True, exclude={"schema_version"})
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def reviewer() -> str:
    return os.environ.get("PTB_REVIEWER") or f"{getpass.getuser()}@{socket.gethostname()}"


def _key(cache_dir: Path) -> bytes:
    path = cache_dir / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _payload(r: Review) -> bytes:
    fields = r.model_dump(mode="json", exclude={"signature", "schema_version"})
    return json.dumps(fields, sort_keys=True).encode()


def sign(
    verdict_file: Path,
    spec: RunSpec,
    decision: Decision,
    why: str,
    cache_dir: Path,
    who: str | None = None,
) -> Review:
    if not why.strip():
        raise ConfigError("a review needs a reason", 'say why: --why "the test items are …"')
    if not verdict_file.is_file():
        raise ConfigError(
            f"no verdict to review at {verdict_file}",
            "run the integrity stage first (ptb judge RUN)",
        )
    review = Review(
        decision=decision,
        why=why.strip(),
        who=who or reviewer(),
        at=now(),
        verdict_sha256=digest(verdict_file),
        run_id=spec.run_id,
        spec_sha256=spec_digest(spec),
        signature="",
    )
    review.signature = hmac.new(_key(cache_dir), _payload(review), "sha256").hexdigest()
    return review


def verifies(review: Review, spec: RunSpec, cache_dir: Path) -> bool:
    """Whether this machine's key signed it over this very run and spec (a review from elsewhere
    cannot be checked here; one signed before run and spec were bound never verifies)."""
    if not (cache_dir / KEY_FILE).is_file():
        return False
    if review.run_id != spec.run_id or review.spec_sha256 != spec_digest(spec):
        return False
    expected = hmac.new(_key(cache_dir), _payload(review), "sha256").hexdigest()
    return hmac.compare_digest(expected, review.signature)


def describe(review: Review) -> str:
    return f"{review.decision} by {review.who} at {review.at:%Y-%m-%d %H:%M}Z: {review.why}"
