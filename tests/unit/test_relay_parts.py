"""The relay's parts without a server: prices, the SSE parser, upstream URLs, configuration."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox.relay import PROVIDERS, Relay, agent_env, load_prices
from posttrainbench.sandbox.relay.fake import anthropic_sse, chat_sse, gemini_sse
from posttrainbench.sandbox.relay.providers import WIRE_FORMATS
from posttrainbench.sandbox.relay.server import money
from posttrainbench.sandbox.relay.wire import SseParser, Usage, upstream_url

KEY = "sk-real-SECRET-4f1d9c2b7a8e6d5c3b2a1908"


def relay(tmp_path: Path, provider: str = "anthropic", **kw: Any) -> Relay:
    kw.setdefault("environ", {"ANTHROPIC_API_KEY": KEY})
    return Relay(provider, tmp_path / "r.sock", tmp_path / "calls.jsonl", "dummy-1", **kw)


# ---------------------------------------------------------------------- prices


def test_packaged_prices_match_names_and_dated_snapshots() -> None:
    table = load_prices()
    assert table.as_of
    assert len(table.models) > 30
    for provider_model in ("claude-sonnet-4-5-20250929", "gpt-5-2025-08-07", "gemini-2.5-pro"):
        assert table.lookup(provider_model) is not None
    mini = table.lookup("gpt-5-mini-2025-08-07")
    assert mini is not None and mini.input == Decimal("0.25")  # the longer key wins over gpt-5
    assert table.lookup("models/gemini-2.5-flash") is table.lookup("gemini-2.5-flash")
    assert table.lookup("gpt-5.9") is None  # no "-" after the key: not a snapshot of gpt-5
    assert table.lookup("llama-3") is None and table.lookup(None) is None


def test_costs_are_exact() -> None:
    table = load_prices()
    sonnet = table.lookup("claude-sonnet-4-5")
    assert sonnet is not None
    usage = Usage(
        input_tokens=3000,
        output_tokens=100,
        cached_tokens=1000,
        cache_write_tokens=1500,
        cache_write_1h_tokens=500,
    )
    # 500 × $3 + 1000 × $0.30 + 1000 × $3.75 + 500 × $6 (1 h) + 100 × $15
    assert sonnet.cost(usage) == Decimal("0.01005")
    # above 200K prompt tokens every token takes the long-context rates
    long = Usage(input_tokens=250_000, output_tokens=1000)
    assert sonnet.cost(long) == Decimal("1.5225")  # 250K × $6 + 1K × $22.50
    pro = table.lookup("gemini-2.5-pro")
    assert pro is not None and pro.cost(long) == Decimal("0.64")  # 250K × $2.50 + 1K × $15
    assert pro.cost(Usage(input_tokens=200_000)) == Decimal("0.25")  # at the threshold: base
    assert sum((sonnet.cost(Usage(input_tokens=1)) for _ in range(10**4)), Decimal(0)) == Decimal(
        "0.03"
    )


def test_override_is_merged_field_by_field(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        'as_of = "2030-01-01"\n'
        '[models]\n"claude-sonnet-4-5" = { input = 4 }\n'
        '"house-model" = { input = 0.5, output = 1.5 }\n"team-*" = { input = 1, output = 1 }\n'
    )
    table = load_prices(override)
    sonnet = table.lookup("claude-sonnet-4-5-20250929")
    assert sonnet is not None
    assert (sonnet.input, sonnet.output, sonnet.cached_input) == (4, 15, Decimal("0.30"))
    assert sonnet.long_context is not None  # kept from the packaged table
    house = table.lookup("house-model")
    assert house is not None and house.cost(Usage(input_tokens=10, output_tokens=10)) == Decimal(
        "0.00002"
    )
    assert table.lookup("team-coder") is not None
    assert table.lookup("gpt-5") is not None and table.as_of == "2030-01-01"

    used = relay(tmp_path, environ={"ANTHROPIC_API_KEY": KEY, "PTB_PRICES": str(override)})
    assert used.prices.lookup("house-model") is not None
    assert used.usage().prices_as_of == "2030-01-01"


def test_bad_price_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models]\n"x" = { input = "cheap" }\n')
    with pytest.raises(ConfigError, match="bad price table"):
        load_prices(bad)
    bad.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_prices(bad)
    with pytest.raises(ConfigError, match="cannot read price file"):
        load_prices(tmp_path / "missing.toml")


def test_most_a_call_may_cost() -> None:
    """Every request byte a prompt token, plus the output limit, at the tier those tokens reach."""
    table = load_prices()
    sonnet = table.lookup("claude-sonnet-4-5")
    assert sonnet is not None
    assert sonnet.most(1000, 2000) == Decimal("0.033")  # 1000 × $3 + 2000 × $15
    assert sonnet.most(300_000, 0) == Decimal("1.8")  # above 200K: 300K × $6
    assert sonnet.max_output is None
    gpt41 = table.lookup("gpt-4.1-2025-04-14")
    assert gpt41 is not None and gpt41.max_output == 32_768


@pytest.mark.parametrize(
    ("provider", "path", "body", "most"),
    [
        ("anthropic", "/v1/messages", {"max_tokens": 4096}, 4096),
        ("anthropic", "/v1/messages", {"max_tokens": 0}, 777),
        ("openai", "/v1/responses", {"max_output_tokens": 100}, 100),
        ("openai", "/v1/responses", {"max_tokens": 100}, 777),  # not a Responses field
        ("openai", "/v1/chat/completions", {"max_completion_tokens": 100, "n": 3}, 300),
        ("openai", "/v1/chat/completions", {"max_tokens": 50}, 50),
        ("openai", "/v1/chat/completions", {"n": 2}, 1554),
        ("gemini", "/v1beta/models/m:generateContent",
         {"generationConfig": {"maxOutputTokens": 10, "candidateCount": 2}}, 20),
        ("gemini", "/v1beta/models/m:generateContent",
         {"generation_config": {"max_output_tokens": 10}}, 10),
        ("gemini", "/v1beta/models/m:generateContent", {"generationConfig": "x"}, 777),
    ],
)  # fmt: skip
def test_output_limits(provider: str, path: str, body: dict[str, Any], most: int) -> None:
    fmt = WIRE_FORMATS[provider]
    hit = fmt.route("POST", path)
    assert hit is not None
    assert fmt.max_output(hit[1], body, 777) == most


def test_money() -> None:
    assert money(Decimal(5)) == "$5.00"
    assert money(Decimal("0.01455")) == "$0.0146"
    assert money(Decimal("12.3")) == "$12.30"


# ---------------------------------------------------------------------- wire


def _events(raw: bytes, cut: int | None) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    parser = SseParser(lambda name, data: got.append((name, data)))
    step = cut or len(raw) or 1
    for i in range(0, len(raw), step):
        parser.feed(raw[i : i + step])
    parser.close()
    return got


@pytest.mark.parametrize(
    "raw",
    [
        b"".join(anthropic_sse("a b c", input_tokens=3)),
        b"".join(chat_sse("a b")),
        b"".join(gemini_sse("a b")),  # \r\n line ends
        b"event: x\rdata: 1\r\rdata: 2\ndata: 3\n\n: comment\n\ndata:4",  # bare \r; no last \n
    ],
)
def test_sse_parser_is_indifferent_to_chunking(raw: bytes) -> None:
    whole = _events(raw, None)
    assert whole
    for cut in (1, 2, 7):
        assert _events(raw, cut) == whole


def test_sse_parser_fields() -> None:
    raw = b"event: x\rdata: 1\r\rdata: 2\ndata: 3\n\n: comment\n\ndata:4"
    assert _events(raw, None) == [("x", "1"), ("message", "2\n3"), ("message", "4")]


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        ("https://api.openai.com/v1", "/v1/responses", "https://api.openai.com/v1/responses"),
        ("https://api.openai.com/v1/", "/v1/responses", "https://api.openai.com/v1/responses"),
        ("https://api.openai.com", "/v1/responses", "https://api.openai.com/v1/responses"),
        ("http://gw:8080/openai/v1", "/v1/models", "http://gw:8080/openai/v1/models"),
        ("http://gw:8080/openai", "/v1/models", "http://gw:8080/openai/v1/models"),
        ("https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages"),
        (
            "https://generativelanguage.googleapis.com/v1beta",
            "/v1beta/models/m:generateContent",
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent",
        ),
    ],
)
def test_upstream_url(base: str, path: str, url: str) -> None:
    assert upstream_url(base, path) == url


def test_agent_env() -> None:
    assert set(PROVIDERS) == {"anthropic", "openai", "gemini"} == set(WIRE_FORMATS)
    base = "http://127.0.0.1:4000"
    assert agent_env("anthropic", base, "t") == {
        "ANTHROPIC_BASE_URL": base,
        "ANTHROPIC_API_KEY": "t",
    }
    assert agent_env("openai", base + "/", "t") == {
        "OPENAI_BASE_URL": base + "/v1",
        "OPENAI_API_KEY": "t",
    }
    assert agent_env("gemini", base, "t") == {"GOOGLE_GEMINI_BASE_URL": base, "GEMINI_API_KEY": "t"}


def test_error_shapes() -> None:
    for name, fmt in WIRE_FORMATS.items():
        body = json.loads(fmt.error_body(403, "ptb relay: no"))
        assert body["error"]["message"] == "ptb relay: no", name


# ---------------------------------------------------------------------- configuration


def test_missing_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY") as err:
        relay(tmp_path, environ={"ANTHROPIC_API_KEY": "  "})
    assert err.value.hint and "ANTHROPIC_API_KEY" in err.value.hint
    with pytest.raises(ConfigError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        relay(tmp_path, "gemini", environ={})
    assert relay(tmp_path, "gemini", environ={"GOOGLE_API_KEY": KEY}).provider == "gemini"


def test_other_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown API provider 'mistral'"):
        relay(tmp_path, "mistral")
    with pytest.raises(ConfigError, match="budget"):
        relay(tmp_path, budget_usd=-1)
    with pytest.raises(ConfigError, match="budget"):
        relay(tmp_path, budget_usd="lots")
    assert relay(tmp_path, budget_usd=0.1).budget_usd == Decimal("0.1")
    with pytest.raises(ConfigError, match="ANTHROPIC_BASE_URL"):
        relay(tmp_path, environ={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="over 107 bytes"):
        Relay(
            "anthropic",
            tmp_path / ("s" * 120),
            tmp_path / "c",
            "d",
            environ={"ANTHROPIC_API_KEY": KEY},
        )
    with pytest.raises(ConfigError, match="equals the real API key"):
        Relay("anthropic", tmp_path / "s", tmp_path / "c", KEY, environ={"ANTHROPIC_API_KEY": KEY})
    not_socket = tmp_path / "r.sock"
    not_socket.write_text("x")
    with pytest.raises(ConfigError, match="not a socket"):
        relay(tmp_path).start()


def test_harness_proxy_is_used_for_the_upstream_unless_excluded(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "HTTPS_PROXY": "http://proxy:3128"}
    assert relay(tmp_path, environ=env)._proxy == "http://proxy:3128"
    excluded = env | {"NO_PROXY": "localhost,.anthropic.com"}
    assert relay(tmp_path, environ=excluded)._proxy is None


@pytest.mark.parametrize("allowed", [False, True])
def test_the_runs_allowance_of_provider_tools_reaches_its_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: bool
) -> None:
    from posttrainbench.records import RunSpec
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.sandbox import services
    from posttrainbench.sandbox.host import HostSandbox

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    spec = RunSpec(
        run_id="r1", agent="claude-code", base_model="ptb-tiny", benchmark="arith", budget_s=60,
        api_provider="anthropic", allow_provider_tools=allowed,
    )  # fmt: skip
    with services.start(RunPaths(tmp_path / "run"), spec, HostSandbox()) as svc:
        assert svc.relay is not None and svc.relay.allow_provider_tools is allowed
    assert RunSpec.model_fields["allow_provider_tools"].default is False


def test_ptb_run_has_the_allowance_flag() -> None:
    from typer.testing import CliRunner

    from posttrainbench.cli import app

    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--allow-provider-tools" in result.output
