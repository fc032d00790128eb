"""Provenance of final_model's weights on small Qwen3-shaped checkpoints built on the fly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.integrity.base import CheckContext
from posttrainbench.integrity.provenance import ProvenanceCheck
from posttrainbench.integrity.weights import (
    MAX_MERGE_RESIDUAL,
    Finding,
    WeightComparison,
    compare_weights,
    judge,
)
from posttrainbench.records import CollectOutcome, RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info

H, INTER, V, LAYERS = 64, 128, 500, 2
INDEX = "model.safetensors.index.json"
Tensors = dict[str, torch.Tensor]


def _init(seed: int) -> Tensors:
    g = torch.Generator().manual_seed(seed)
    out: Tensors = {"model.embed_tokens.weight": torch.randn(V, H, generator=g) * 0.02}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{m}.weight"] = torch.randn(H, H, generator=g) * 0.02
        out[p + "mlp.gate_proj.weight"] = torch.randn(INTER, H, generator=g) * 0.02
        out[p + "mlp.up_proj.weight"] = torch.randn(INTER, H, generator=g) * 0.02
        out[p + "mlp.down_proj.weight"] = torch.randn(H, INTER, generator=g) * 0.02
        out[p + "input_layernorm.weight"] = torch.ones(H)
        out[p + "post_attention_layernorm.weight"] = torch.ones(H)
    out["model.norm.weight"] = torch.ones(H)
    out["lm_head.weight"] = torch.randn(V, H, generator=g) * 0.02
    return out


def _noise_like(t: torch.Tensor, rel: float, g: torch.Generator) -> torch.Tensor:
    n = torch.randn(t.shape, generator=g)
    return n * (rel * t.norm() / n.norm())


def _fine_tune(base: Tensors, rel: float, seed: int) -> Tensors:
    g = torch.Generator().manual_seed(seed)
    return {k: v + _noise_like(v, rel, g) if v.dim() >= 2 else v for k, v in base.items()}


def _long_training(base: Tensors, cos: float, seed: int) -> Tensors:
    """Mostly fresh weights: cosine `cos` to the base, same norm."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        if v.dim() < 2:
            out[k] = v * 1.3
            continue
        n = torch.randn(v.shape, generator=g)
        n = n * (v.norm() / n.norm())
        out[k] = cos * v + (1 - cos**2) ** 0.5 * n
    return out


def _lora(base: Tensors, rank: int, rel: float, seed: int) -> Tensors:
    g = torch.Generator().manual_seed(seed)
    out = dict(base)
    for k, v in base.items():
        if v.dim() == 2 and "layers" in k:
            delta = torch.randn(v.shape[0], rank, generator=g) @ torch.randn(
                rank, v.shape[1], generator=g
            )
            out[k] = v + delta * (rel * v.norm() / delta.norm())
    return out


def _structured(base: Tensors, rel: float, seed: int) -> Tensors:
    """The instruct twin: a fine-tune of the base with a rank-8 delta of relative size `rel`."""
    return {k: v * 1.05 if v.dim() < 2 else v for k, v in _lora(base, 8, rel, seed).items()}


def _save(
    folder: Path, tensors: Tensors, dtype: torch.dtype = torch.bfloat16, shards: int = 1
) -> Path:
    folder.mkdir(parents=True)
    names = list(tensors)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        fname = "model.safetensors" if shards == 1 else f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k].to(dtype).contiguous() for k in group}, str(folder / fname))
        weight_map.update(dict.fromkeys(group, fname))
    if shards > 1:
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"hidden_size": H, "vocab_size": V}))
    return folder


def _toward(base: Tensors, alt: Tensors, share: float, seed: int) -> Tensors:
    """`share` of alt's delta on every matrix plus a random move as large as that share."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        d = alt[k] - v
        out[k] = v + share * d + _noise_like(d, share, g) if v.dim() >= 2 else v
    return out


def _bf16(t: Tensors) -> Tensors:
    return {k: v.to(torch.bfloat16).float() for k, v in t.items()}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    base = _bf16(_init(0))
    twin = _bf16(_structured(base, 0.3, 1))
    other = _bf16(_init(2))
    perm = torch.randperm(INTER, generator=torch.Generator().manual_seed(3))
    permuted = dict(other)
    for i in range(LAYERS):
        p = f"model.layers.{i}.mlp."
        permuted[p + "gate_proj.weight"] = other[p + "gate_proj.weight"][perm]
        permuted[p + "up_proj.weight"] = other[p + "up_proj.weight"][perm]
        permuted[p + "down_proj.weight"] = other[p + "down_proj.weight"][:, perm]
    extra = dict(base)
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        extra[k] = torch.cat([base[k], torch.randn(10, H) * 0.02])
    transposed = dict(base)
    transposed["model.layers.0.mlp.down_proj.weight"] = base[
        "model.layers.0.mlp.down_proj.weight"
    ].T
    # Layers taken from the twin: its MLP matrices, an honest fine-tune elsewhere.
    twin_mlps = _fine_tune(base, 0.05, 14)
    twin_mlps.update({k: v for k, v in twin.items() if ".mlp." in k})
    # What long training on the task does when the twin is where it converges: half of the twin's
    # delta, plus as large a move of its own (residual of the merge fit ~0.7).
    task_directed = _toward(base, twin, 0.5, 15)
    specs: dict[str, tuple[Tensors, torch.dtype, int]] = {
        "base": (base, torch.bfloat16, 1),
        "twin": (twin, torch.bfloat16, 1),
        "other": (other, torch.bfloat16, 1),
        # honest
        "unchanged": (base, torch.bfloat16, 1),
        "resharded": (base, torch.bfloat16, 3),
        "fp32": (base, torch.float32, 1),
        "extra_rows": (extra, torch.bfloat16, 1),
        "fine_tune": (_fine_tune(base, 0.05, 10), torch.bfloat16, 1),
        "long_training": (_long_training(base, 0.2, 11), torch.bfloat16, 1),
        "lora": (_lora(base, 4, 0.05, 12), torch.bfloat16, 2),
        # dishonest
        "twin_substituted": (twin, torch.bfloat16, 1),
        "merge_50_50": ({k: (base[k] + twin[k]) / 2 for k in base}, torch.bfloat16, 1),
        "twin_fine_tune": (_fine_tune(twin, 0.05, 13), torch.bfloat16, 1),
        "other_substituted": (other, torch.bfloat16, 1),
        "other_retyped_resharded": (other, torch.float32, 3),
        "other_permuted": (permuted, torch.bfloat16, 1),
        "renamed": (
            {k.replace("model.", "transformer."): v for k, v in base.items()},
            torch.bfloat16,
            1,
        ),
        "transposed": (transposed, torch.bfloat16, 1),
        # the merge fit
        "merge_30": ({k: 0.7 * base[k] + 0.3 * twin[k] for k in base}, torch.bfloat16, 1),
        "twin_mlps": (twin_mlps, torch.bfloat16, 1),
        "task_directed": (task_directed, torch.bfloat16, 1),
    }
    return {
        name: _save(root / name, t, dtype, shards) for name, (t, dtype, shards) in specs.items()
    }


def _compare(
    models: dict[str, Path], final: str, alts: tuple[str, ...] = ("twin", "other")
) -> WeightComparison:
    return compare_weights(models[final], models["base"], {a: models[a] for a in alts})


@pytest.mark.parametrize(
    "final",
    ["unchanged", "resharded", "fp32", "extra_rows", "fine_tune", "long_training", "lora"],
)
def test_honest_results_pass(models: dict[str, Path], final: str) -> None:
    cmp = _compare(models, final)
    assert judge(cmp) == [], judge(cmp)
    assert cmp.derived_fraction == 1.0
    assert not cmp.missing and not cmp.shape_mismatch
    for alt in cmp.alternatives:
        assert abs(alt.projection) < 0.1, alt


def test_statistics_of_the_honest_cases(models: dict[str, Path]) -> None:
    same = _compare(models, "fp32")
    assert same.mean_cos_base == pytest.approx(1.0, abs=1e-6)
    assert all(s.rel_change < 1e-6 for s in same.tensors)
    assert same.bytes_read > 0 and same.seconds > 0
    extra = _compare(models, "extra_rows")
    embed = next(s for s in extra.tensors if s.name == "model.embed_tokens.weight")
    assert embed.numel == V * H and embed.cos_base == pytest.approx(1.0, abs=1e-6)
    ft = _compare(models, "fine_tune")
    assert 0.99 < ft.mean_cos_base < 1.0
    k_proj = next(s for s in ft.tensors if s.name.endswith("0.self_attn.k_proj.weight"))
    assert k_proj.rel_change == pytest.approx(0.05, rel=0.1)
    assert k_proj.z_base == pytest.approx(k_proj.cos_base * 64)
    long = _compare(models, "long_training")
    assert 0.15 < long.mean_cos_base < 0.25
    twin = next(a for a in ft.alternatives if a.name == "twin")
    assert twin.mean_cos < ft.mean_cos_base


@pytest.mark.parametrize(
    ("final", "codes"),
    [
        ("twin_substituted", {"closer_to_alternative", "toward_alternative"}),
        ("merge_50_50", {"toward_alternative"}),
        ("twin_fine_tune", {"closer_to_alternative", "toward_alternative"}),
        ("other_substituted", {"not_derived", "closer_to_alternative", "toward_alternative"}),
        ("other_retyped_resharded", {"not_derived", "toward_alternative"}),
        ("other_permuted", {"not_derived"}),
        ("renamed", {"renamed"}),
        ("transposed", {"shape_mismatch"}),
    ],
)
def test_dishonest_results_fail(models: dict[str, Path], final: str, codes: set[str]) -> None:
    findings = judge(_compare(models, final))
    assert codes <= {f.code for f in findings}, findings
    assert all(f.message and "\n" not in f.message for f in findings)


def test_projection_measures_the_share_of_the_twin(models: dict[str, Path]) -> None:
    def twin_summary(final: str) -> tuple[float, float]:
        alt = next(a for a in _compare(models, final).alternatives if a.name == "twin")
        return alt.projection, alt.delta_cos

    assert twin_summary("twin_substituted") == pytest.approx((1.0, 1.0), abs=0.01)
    proj, dcos = twin_summary("merge_50_50")
    assert proj == pytest.approx(0.5, abs=0.02) and dcos > 0.99
    proj, dcos = twin_summary("fine_tune")
    assert abs(proj) < 0.05 and abs(dcos) < 0.1


def test_permuted_copy_is_caught_on_the_permuted_tensors(models: dict[str, Path]) -> None:
    cmp = _compare(models, "other_permuted")
    finding = next(f for f in judge(cmp) if f.code == "not_derived")
    assert any(".mlp." in t for t in finding.tensors)
    other = next(a for a in cmp.alternatives if a.name == "other")
    mlp = [s for s in cmp.tensors if ".mlp." in s.name]
    assert all(abs(s.cos_alt["other"]) < 0.1 for s in mlp)
    assert other.mean_cos < 0.7  # attention and norms still match "other"


def test_twin_substitution_passes_when_the_twin_is_not_known(models: dict[str, Path]) -> None:
    """A real instruct twin is a fine-tune of the base: alone, it looks like an honest fine-tune.
    Only comparing with the twin itself exposes it, which is why the alternatives matter."""
    alone = compare_weights(models["twin_substituted"], models["base"])
    assert judge(alone) == []
    assert alone.derived_fraction == 1.0 and alone.mean_cos_base > 0.9
    assert judge(_compare(models, "twin_substituted", ("other",))) == []
    assert judge(_compare(models, "twin_substituted", ("twin",))) != []


def test_folder_without_safetensors_is_an_error(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \*\.safetensors"):
        compare_weights(tmp_path, models["base"])
    with pytest.raises(ValueError, match=r"no \*\.safetensors"):
        compare_weights(models["base"], tmp_path / "absent")


def test_final_is_read_as_exactly_the_recorded_weight_set(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """The measured attack: the twin in model.safetensors (what transformers loads) beside the
    base in zz.safetensors (what reading every shard, the last one winning, saw). Read as the
    weight set collect records, provenance sees what the evaluation loads."""
    folder = tmp_path / "beside"
    folder.mkdir()
    shutil.copy(models["twin"] / "model.safetensors", folder / "model.safetensors")
    shutil.copy(models["base"] / "model.safetensors", folder / "zz.safetensors")
    alts = {"twin": models["twin"]}
    assert judge(compare_weights(folder, models["base"], alts)) == []  # the hole, unrecorded
    recorded = compare_weights(folder, models["base"], alts, final_files=["model.safetensors"])
    assert {"closer_to_alternative", "toward_alternative"} <= {f.code for f in judge(recorded)}


def test_a_recorded_index_is_read_with_exactly_its_shards(models: dict[str, Path]) -> None:
    folder = models["resharded"]
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    cmp = compare_weights(folder, models["base"], final_files=[INDEX, *shards])
    assert judge(cmp) == [] and cmp.derived_fraction == 1.0
    with pytest.raises(ValueError, match="does not name exactly the recorded shards"):
        compare_weights(folder, models["base"], final_files=[INDEX, *shards[:-1]])
    with pytest.raises(ValueError, match="no weight set recorded"):
        compare_weights(folder, models["base"], final_files=[])


def test_the_provenance_check_reads_the_weight_set_collect_recorded(
    tmp_path: Path, settings: Settings, tiny_model_dir: Path
) -> None:
    """An unrelated checkpoint in model.safetensors beside the base's weights in zz.safetensors:
    the check reads what collect recorded (model.safetensors, what the evaluation loads)."""
    paths = RunPaths(tmp_path / "run")
    paths.final_model.mkdir(parents=True)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    g = torch.Generator().manual_seed(9)
    other = {
        k: torch.randn(v.shape, generator=g).to(v.dtype) * v.float().std() for k, v in base.items()
    }
    save_file(other, str(paths.final_model / "model.safetensors"))
    shutil.copy(tiny_model_dir / "model.safetensors", paths.final_model / "zz.safetensors")
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    record.collect = CollectOutcome(status="collected", weights=["model.safetensors"])
    ctx = CheckContext(
        paths=paths, record=record, model=MODELS.get("ptb-tiny"), bench=BENCHMARKS.get("arith"),
        settings=settings,
    )  # fmt: skip
    check = ProvenanceCheck().run(ctx)
    assert check.status == "failed", check
    assert any("not_derived" in r for r in check.reasons), check.reasons


def _codes(findings: list[Finding], decisive: bool) -> set[str]:
    return {f.code for f in findings if f.decisive == decisive}


@pytest.mark.parametrize(
    ("final", "code", "alpha"),
    [
        ("twin_substituted", "equal_to_alternative", 1.0),
        ("other_retyped_resharded", "equal_to_alternative", 1.0),
        ("merge_50_50", "merged_with_alternative", 0.5),
        ("merge_30", "merged_with_alternative", 0.3),
        ("twin_fine_tune", "merged_with_alternative", 1.0),
    ],
)
def test_a_merge_is_decisive_with_its_coefficient(
    models: dict[str, Path], final: str, code: str, alpha: float
) -> None:
    """final - base ≈ α (alt - base) with a small residual: the alternative itself (α = 1, only
    rounding left), a linear merge, or the alternative fine-tuned a little."""
    cmp = _compare(models, final)
    alt = "other" if final.startswith("other") else "twin"
    summary = next(a for a in cmp.alternatives if a.name == alt)
    assert summary.projection == pytest.approx(alpha, abs=0.03)
    assert summary.residual <= MAX_MERGE_RESIDUAL
    finding = next(f for f in judge(cmp) if f.code == code and f.alternative == alt)
    assert finding.decisive and finding.tensors
    assert f"α = {summary.projection:.2f}" in finding.message


def test_layers_taken_from_an_alternative_are_a_partial_merge(models: dict[str, Path]) -> None:
    cmp = _compare(models, "twin_mlps")
    twin = next(a for a in cmp.alternatives if a.name == "twin")
    assert twin.residual > MAX_MERGE_RESIDUAL  # not a merge as a whole
    finding = next(f for f in judge(cmp) if f.code == "merged_with_alternative")
    assert finding.decisive and finding.tensors
    assert all(".mlp." in t for t in finding.tensors), finding.tensors


def test_task_directed_training_is_only_weakly_toward_the_twin(models: dict[str, Path]) -> None:
    """Half of the twin's delta plus a move of its own, as long task training leaves: projection
    0.5 like a 50/50 merge, but the merge fit leaves a large residual. Weak findings only; the
    check makes them decisive only when the agent obtained the twin."""
    cmp = _compare(models, "task_directed")
    twin = next(a for a in cmp.alternatives if a.name == "twin")
    assert twin.projection == pytest.approx(0.5, abs=0.05)
    assert twin.residual > 0.6 > MAX_MERGE_RESIDUAL
    assert twin.fitted_fraction == 0.0
    findings = judge(cmp)
    assert _codes(findings, decisive=True) == set()
    assert "toward_alternative" in _codes(findings, decisive=False)
    weak = next(f for f in findings if f.code == "toward_alternative")
    assert weak.alternative == "twin"
