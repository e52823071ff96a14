"""The RealMLP-style and TabM-style families: layers against small references, training against torch.optim,
determinism, early stopping, divergence, save and load."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tabduel.engine import realmlp, tabm
from tabduel.engine.data import Data
from tabduel.engine.torchfit import EVAL_ROWS, TrainingDiverged, schedule
from tabduel.infra.config import ConfigError, RealMLPConfig, TabMConfig
from tabduel.infra.runtime import using_threads
from tabduel.models import realmlp as realmlp_family
from tabduel.models import tabm as tabm_family

FAST_REALMLP = dict(hidden=(16, 16), epochs=4, batch_size=64, device="cpu", threads=1)
FAST_TABM = dict(k=4, d_block=16, epochs=4, batch_size=64, device="cpu", threads=1, bins=8, embedding_dim=4)


@pytest.fixture(scope="module")
def data():
    """Three numeric columns (one heavy-tailed) and a one-hot pair that the features step did not scale."""
    rng = np.random.default_rng(0)
    n = 500
    num = rng.normal(size=(n, 3))
    num[:, 2] = rng.standard_t(2, size=n)
    level = rng.integers(0, 2, n)
    x = np.column_stack([num, level == 0, level == 1]).astype(np.float32)
    y = (np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.8 * x[:, 3] + rng.normal(0, 0.05, n)).astype(np.float32)
    names = ("a", "b", "c", "g_1", "g_2")
    return Data(x[:350], y[:350], x[350:], y[350:], names, ("a", "b", "c"))


# ------------------------------------------------------------------ schedules and input maps

def test_schedules_have_pytabkits_shapes():
    assert schedule("coslog4", 0.0) == 0.0 and schedule("coslog4", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert schedule("coslog4", 1 / 15) == pytest.approx(0.0, abs=1e-12)  # log2(2) = 1: the end of the first cycle
    assert schedule("coslog4", (2 ** 0.5 - 1) / 15) == pytest.approx(1.0)  # half a cycle: the first peak
    assert schedule("flat_cos", 0.3) == 1.0 and schedule("flat_cos", 0.75) == pytest.approx(0.5)
    assert schedule("flat_cos", 1.0) == pytest.approx(0.0, abs=1e-12) and schedule("cos", 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        schedule("linear", 0.5)


def test_robust_scaling_and_smooth_clip_touch_only_the_numeric_columns(data):
    cfg = RealMLPConfig(embedding="none", front_scale=False, **FAST_REALMLP)
    net = realmlp.RealMLPNet(realmlp.architecture(data, cfg))
    realmlp.initialize(net, data.x_train, data.y_train, torch.Generator().manual_seed(0))
    assert net.num_idx.tolist() == [0, 1, 2] and net.other_idx.tolist() == [3, 4]
    x = data.x_valid.astype(np.float64)
    med = np.median(data.x_train[:, :3], axis=0)
    iqr = np.quantile(data.x_train[:, :3], 0.75, axis=0) - np.quantile(data.x_train[:, :3], 0.25, axis=0)
    z = (x[:, :3] - med) / iqr
    expected = np.column_stack([z / np.sqrt(1 + z ** 2 / 9), x[:, 3:]])
    with torch.no_grad():
        got = net.inputs(torch.from_numpy(data.x_valid)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(got[:, :3]).max() < 3


def test_robust_scaling_falls_back_to_half_the_range_and_to_zero():
    x = np.array([[0, 5], [0, 5], [0, 5], [0, 5], [4, 5]], dtype=np.float32)  # IQR 0, range 4; constant
    median, inv = realmlp.robust_scaling(x)
    assert median.tolist() == [0, 5] and inv.tolist() == [0.5, 0.0]


# ------------------------------------------------------------------ RealMLP layers against a hand-written reference

def test_front_scale_and_ntk_layers_match_a_hand_written_gradient():
    """One hidden layer without embedding or parametric activation: the gradients of the scale vector, the NTK
    weights and the biases, by hand, equal autograd's."""
    torch.manual_seed(0)
    arch = {"n_in": 3, "numeric": [], "hidden": [5], "activation": "relu", "parametric": False, "embedding": "none",
            "frequencies": 4, "embedding_dim": 2, "embedding_scale": 0.1, "front_scale": True}
    net = realmlp.RealMLPNet(arch).double()
    with torch.no_grad():
        net.scale.copy_(torch.tensor([0.5, -1.5, 2.0]))
        net.biases[0].copy_(torch.randn(5))
    x, t = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    loss = F.mse_loss(net.normalized(x), t)
    loss.backward()
    s, w1, b1, w2, b2 = net.scale, net.weights[0], net.biases[0], net.weights[1], net.biases[1]
    with torch.no_grad():
        u = x * s
        z = u @ w1 / math.sqrt(3) + b1
        h = z.clamp_min(0)
        y = (h @ w2 / math.sqrt(5)).squeeze(1) + b2
        g = 2 * (y - t) / len(t)  # d loss / d y
        g_w2 = h.t() @ g.unsqueeze(1) / math.sqrt(5)
        g_h = g.unsqueeze(1) @ w2.t() / math.sqrt(5)
        g_z = g_h * (z > 0)
        g_w1 = u.t() @ g_z / math.sqrt(3)
        g_u = g_z @ w1.t() / math.sqrt(3)
        expected = {"scale": (g_u * x).sum(0), "w1": g_w1, "b1": g_z.sum(0), "w2": g_w2, "b2": g.sum().reshape(1)}
    got = {"scale": s.grad, "w1": w1.grad, "b1": b1.grad, "w2": w2.grad, "b2": b2.grad}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], msg=name)


def test_pbld_embedding_is_cos_linear_and_the_column_itself():
    emb = realmlp.PeriodicEmbedding(2, frequencies=3, dim=4, scale=0.1, gen=torch.Generator().manual_seed(1))
    x = torch.randn(6, 2)
    out = emb(x)
    assert out.shape == (6, 2 * 3 + 2)
    for j in range(2):
        z = torch.cos(2 * math.pi * x[:, j:j + 1] * emb.w1[j] + emb.b1[j])
        torch.testing.assert_close(out[:, 3 * j:3 * j + 3], z @ emb.w2[j] + emb.b2[j])
    torch.testing.assert_close(out[:, 6:], x)


def test_init_gives_unit_sd_pre_activations_and_he5_biases(data):
    net = realmlp.RealMLPNet(realmlp.architecture(data, RealMLPConfig(**FAST_REALMLP)),
                             torch.Generator().manual_seed(3))
    realmlp.initialize(net, data.x_train, data.y_train, torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = net.inputs(torch.from_numpy(data.x_train))
        z = h @ net.weights[0] / math.sqrt(h.shape[1])
        torch.testing.assert_close(z.std(0, correction=0), torch.ones(16), rtol=1e-4, atol=1e-4)
        pre = z + net.biases[0]  # he+5: each bias puts its unit's kink inside the data's range
        assert ((pre.min(0).values < 0) & (pre.max(0).values > 0)).all()


def test_realmlp_trains_as_a_plain_torch_adamw_loop(data):
    """With constant schedules and no dropout, the engine's steps equal a hand loop over the same batches with
    torch.optim.AdamW and RealMLP's per-kind learning-rate and weight-decay factors."""
    cfg = RealMLPConfig(**{**FAST_REALMLP, "epochs": 2}, lr=0.01, lr_schedule="constant", weight_decay=0.01,
                        wd_schedule="constant", dropout=0.0)
    ours = realmlp.fit(data, cfg).model

    gen = torch.Generator().manual_seed(cfg.seed)
    ref = realmlp.RealMLPNet(realmlp.architecture(data, cfg), gen)
    realmlp.initialize(ref, data.x_train, data.y_train, gen)
    groups = realmlp.parameter_groups(ref)
    opt = torch.optim.AdamW([{"params": g.params, "lr": cfg.lr * g.lr, "weight_decay": cfg.weight_decay * g.wd}
                             for g in groups if g.params], betas=(0.9, cfg.beta2))
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    order = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        full = len(x) // cfg.batch_size * cfg.batch_size  # pytabkit leaves out the last partial batch
        for idx in torch.randperm(len(x), generator=order)[:full].split(cfg.batch_size):
            opt.zero_grad()
            F.mse_loss(ref.normalized(x[idx]), (y[idx] - ref.y_mean) / ref.y_std).backward()
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_realmlp_learns_and_keeps_its_best_epoch(data):
    fit = realmlp.fit(data, RealMLPConfig(**{**FAST_REALMLP, "epochs": 30}))
    valid = fit.history["valid_loss"]
    assert len(valid) == 30 and min(valid) < 0.2 * np.var(data.y_valid)
    pred = realmlp_family.predict(fit.model, data.x_valid)
    assert float(np.mean((pred - data.y_valid) ** 2)) == pytest.approx(min(valid), rel=1e-5)
    assert fit.info["best_epoch"] == int(np.argmin(valid)) + 1
    assert pred.min() >= data.y_train.min() and pred.max() <= data.y_train.max()  # clamped to the train range


@pytest.mark.parametrize("numeric", ["standard", "quantile"])
def test_realmlp_takes_other_numeric_maps_and_saves_them_with_the_net(data, numeric, tmp_path):
    """The corruption bench's realmlp-standard and realmlp-quantile: no robust scaling or smooth clipping; quantile
    maps the train quantiles to normal scores inside the net, so a reloaded model predicts the same."""
    fit = realmlp_family.fit(data, RealMLPConfig(**FAST_REALMLP, numeric=numeric))
    net = fit.model
    x = torch.from_numpy(data.x_valid)
    raw = x[:, net.num_idx]
    seen = net.quantile(raw) if numeric == "quantile" else raw
    assert (net.quantile is not None) == (numeric == "quantile")
    if numeric == "quantile":  # normal scores of the train quantiles: the heavy-tailed column is tamed too
        assert float(seen[:, 2].abs().max()) < 6 and float(raw[:, 2].abs().max()) > 6
    realmlp_family.save(fit, tmp_path)
    again = realmlp_family.load(tmp_path)
    np.testing.assert_array_equal(realmlp_family.predict(again, data.x_valid),
                                  realmlp_family.predict(fit.model, data.x_valid))


# ------------------------------------------------------------------ categories: one-hot or embedded (RealMLP-TD)

@pytest.fixture(scope="module")
def categorical():
    """A numeric column, a category of 10 levels (level 10 never in train, some cells missing: the features step
    imputed the mode and set the indicator) and one of 8 levels, one-hot as the features step writes them."""
    rng = np.random.default_rng(5)
    n = 400
    big = rng.integers(1, 10, n)  # levels 1..9 everywhere
    big[350:360] = 10  # level 10 only outside train
    missing = np.zeros(n, bool)
    missing[rng.choice(350, 20, replace=False)] = True
    big[missing] = 1  # the mode stands in; the indicator says it is missing
    small = rng.integers(1, 9, n)
    num = rng.normal(size=n)
    x = np.column_stack([num, big[:, None] == np.arange(1, 11), small[:, None] == np.arange(1, 9),
                         missing]).astype(np.float32)
    y = (num + 0.3 * big - 0.2 * small + rng.normal(0, 0.1, n)).astype(np.float32)
    names = ("a", *(f"big_{i}" for i in range(1, 11)), *(f"small_{i}" for i in range(1, 9)), "big_missing")
    cats = (("big", names[1:11], "big_missing"), ("small", names[11:19], ""))
    return Data(x[:350], y[:350], x[350:], y[350:], names, ("a",), cats)


def test_a_category_of_more_than_8_levels_is_embedded_and_one_of_8_stays_one_hot(categorical):
    cfg = RealMLPConfig(**FAST_REALMLP)
    arch = realmlp.architecture(categorical, cfg)
    assert arch["categories"] == [{"columns": list(range(1, 11)), "codes": [1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
                                   "missing": 19, "size": 10}]  # 9 levels seen in train, code 0 reserved
    net = realmlp.RealMLPNet(arch, torch.Generator().manual_seed(0))
    assert net.other_idx.tolist() == list(range(11, 19))  # the 8-level one-hot columns pass through
    assert net.categories.table.shape == (10, 8)  # pytabkit's embedding_size 8, one row per code
    assert net.weights[0].shape[0] == 1 * 4 + 8 + 8  # pbld numeric, 8 one-hot columns, one embedded category
    x = torch.from_numpy(np.concatenate([categorical.x_train, categorical.x_valid]))
    codes = net.categories.codes(x)[:, 0].numpy()
    level = x[:, 1:11].argmax(1).numpy() + 1
    is_missing = x[:, 19].numpy() > 0.5
    np.testing.assert_array_equal(codes[is_missing], 0)  # missing: the reserved code
    np.testing.assert_array_equal(codes[level == 10], 0)  # a level unseen in train: the reserved code
    seen = ~is_missing & (level < 10)
    np.testing.assert_array_equal(codes[seen], level[seen])
    torch.testing.assert_close(net.categories(x[:3]), net.categories.table[torch.from_numpy(codes[:3])].flatten(1))
    kinds = {id(p): (g.lr, g.wd) for g in realmlp.parameter_groups(net) for p in g.params}
    assert kinds[id(net.categories.table)] == (1.0, 1.0)  # pytabkit: emb_lr_factor 1, no wd factor
    wider = realmlp.architecture(categorical, RealMLPConfig(**FAST_REALMLP, max_one_hot=9))
    assert wider["categories"] == []  # 9 levels seen: one-hot at max_one_hot 9


def test_an_embedded_category_trains_and_reloads_to_the_same_predictions(categorical, tmp_path):
    fit = realmlp_family.fit(categorical, RealMLPConfig(**{**FAST_REALMLP, "epochs": 20}))
    assert fit.model.categories is not None
    pred = realmlp_family.predict(fit.model, categorical.x_valid)
    assert float(np.mean((pred - categorical.y_valid) ** 2)) < 0.5 * float(np.var(categorical.y_valid))
    realmlp_family.save(fit, tmp_path)
    np.testing.assert_array_equal(realmlp_family.predict(realmlp_family.load(tmp_path), categorical.x_valid), pred)


def test_a_bad_category_setting_is_one_clear_line():
    with pytest.raises(ConfigError, match="realmlp.category_dim"):
        RealMLPConfig(category_dim=0)
    with pytest.raises(ConfigError, match="realmlp.max_one_hot"):
        RealMLPConfig(max_one_hot=-1)


# ------------------------------------------------------------------ TabM against k separate MLPs

def _folded_mlp(net: tabm.TabMNet, i: int) -> nn.Sequential:
    """Member i of a TabM (no embedding) as a plain nn.Sequential, its adapters folded into the weights."""
    layers: list[nn.Module] = []
    first = net.adapter[i] if net.adapter is not None else None
    for block in net.blocks:
        w, b = block.weight.detach().clone(), block.bias.detach().clone()
        if isinstance(block, tabm.EnsembleLinear):
            w = block.s[i].detach().unsqueeze(1) * w * block.r[i].detach()
            b = b[i]
        elif first is not None:
            w, first = w * first.detach(), None
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers += [lin, nn.ReLU()]
    head = nn.Linear(net.head_w.shape[1], 1)
    with torch.no_grad():
        head.weight.copy_(net.head_w[i].detach().unsqueeze(0))
        head.bias.copy_(net.head_b[i].detach().reshape(1))
    return nn.Sequential(*layers, head)


@pytest.mark.parametrize("variant", ["tabm", "tabm-mini"])
def test_batch_ensemble_equals_k_separate_mlps_with_folded_adapters(data, variant):
    cfg = TabMConfig(**{**FAST_TABM, "embedding": "none", "variant": variant, "k": 3, "numeric": "standard"})
    net = tabm.build(data, cfg).eval()
    with torch.no_grad():  # adapters away from 1, so that folding them in is tested
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        x = torch.from_numpy(data.x_valid)
        members = net.members(x)
        for i in range(3):
            torch.testing.assert_close(members[:, i], _folded_mlp(net, i)(x).squeeze(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x).squeeze(1), members.mean(1) * net.y_std + net.y_mean)
        # A batch per member: member i's rows go through member i only.
        per_member = torch.stack([x[:20], x[20:40], x[40:60]], dim=1)  # (20, 3, features)
        out = net.members(per_member)
        for i in range(3):
            torch.testing.assert_close(out[:, i], members[20 * i:20 * i + 20, i], rtol=1e-5, atol=1e-5)


def test_tabm_with_one_member_is_a_plain_mlp_with_the_same_init(data):
    """k = 1: adapters of ones and one sign per input; an nn.Sequential with those weights gives the same
    predictions, and the same gradients of the shared weights."""
    net = tabm.build(data, TabMConfig(**{**FAST_TABM, "embedding": "none", "k": 1, "dropout": 0.0,
                                         "numeric": "standard"}))
    r = net.blocks[0].r.detach()[0]
    assert set(r.abs().tolist()) == {1.0}
    for block in net.blocks[1:]:
        assert (block.r == 1).all() and (block.s == 1).all()
    plain = _folded_mlp(net, 0)
    x, t = torch.from_numpy(data.x_train[:64]), torch.randn(64)
    F.mse_loss(net.members(x).squeeze(1), t).backward()
    F.mse_loss(plain(x).squeeze(1), t).backward()
    torch.testing.assert_close(net.blocks[1].weight.grad, plain[2].weight.grad)
    torch.testing.assert_close(net.blocks[0].weight.grad, plain[0].weight.grad * r)  # the sign folded back out


def test_piecewise_linear_encoding_is_the_papers(data):
    emb = tabm.PiecewiseLinearEmbedding(1, 3, 2)
    emb.set_bins([np.array([0.0, 1.0, 3.0])])  # two bins: [0, 1), [1, 3]; the third slot is padding
    x = torch.tensor([[-1.0], [0.5], [2.0], [5.0]])
    expected = torch.tensor([[-1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 2.0, 0.0]])
    torch.testing.assert_close(emb.encode(x)[:, 0], expected)
    edges = tabm.quantile_bins(data.x_train[:, :3], 8)
    assert all(len(e) == 9 and np.all(np.diff(e) > 0) for e in edges)


def test_tabm_maps_numeric_columns_by_train_quantiles_as_sklearn_does(data):
    """The network's quantile map is fit_numeric's (the TabM paper's n_quantiles, noise from the seed): the same
    normal scores as sklearn's transform, on valid and past the train range; the one-hot columns pass through."""
    from tabduel.data.numeric import fit_numeric, map_numeric

    cfg = TabMConfig(**FAST_TABM)
    net = tabm.build(data, cfg, tabm_family.train_quantiles(data, cfg))
    m = fit_numeric(data.x_train[:, :3], (0, 1, 2), "quantile", n_quantiles=tabm.n_quantiles(350),
                    noise=tabm.QUANTILE_NOISE, seed=cfg.seed)
    assert net.arch["quantiles"] == m.quantiles.quantiles_.shape[0] == 11  # 350 // 30, at least 10
    far = np.vstack([data.x_valid, 40 * data.x_valid[:5], -40 * data.x_valid[:5]])
    with torch.no_grad():
        mapped = net.quantile(torch.from_numpy(far[:, :3])).numpy()
    # float32 buffers: the scores agree to 1e-5 but where a value lies within float32 rounding of the train ends
    np.testing.assert_allclose(mapped, map_numeric(m, far[:, :3]), atol=5e-3)
    assert np.abs(mapped).max() < 5.2  # sklearn's bounds, never infinite
    assert tabm.build(data, TabMConfig(**{**FAST_TABM, "numeric": "standard"})).quantile is None
    with pytest.raises(ValueError, match="^numeric = quantile needs a QuantileTransformer fitted on the 3 numeric"):
        tabm.build(data, cfg)  # the engine fits no map itself: the family module hands it in
    assert [tabm.n_quantiles(n) for n in (100, 3000, 10**6)] == [10, 100, 1000]


def test_tabm_weight_decay_groups_are_the_papers(data):
    """Decayed: shared weights, adapters r and s (tabm-mini's adapter), heads, PLE piecewise weights, the periodic
    linear map; not decayed: biases, the PLE linear term, the periodic frequencies and phases."""
    def groups(**kw):
        cfg = TabMConfig(**{**FAST_TABM, **kw})
        net = tabm.build(data, cfg, tabm_family.train_quantiles(data, cfg))
        names = {id(p): n for n, p in net.named_parameters()}
        decay, quiet = tabm.parameter_groups(net)
        assert quiet.wd == 0.0 and decay.wd == 1.0
        return {names[id(p)] for p in decay.params}, {names[id(p)] for p in quiet.params}

    decay, quiet = groups()
    assert decay == {"blocks.0.weight", "blocks.0.r", "blocks.0.s", "blocks.1.weight", "blocks.1.r", "blocks.1.s",
                     "head_w", "embedding.weight"}
    assert quiet == {"blocks.0.bias", "blocks.1.bias", "head_b", "embedding.w0", "embedding.b0"}
    decay, quiet = groups(variant="tabm-mini", embedding="periodic")
    assert {"adapter", "embedding.w2", "blocks.0.weight"} <= decay
    assert quiet == {"blocks.0.bias", "blocks.1.bias", "head_b", "embedding.w1", "embedding.b1", "embedding.b2"}


def test_tabm_defaults_are_the_tabm_packages(data):
    """tabm 0.0.3: TabM.make's k, width, dropout and depth (2 with an embedding, 3 without), the README's AdamW lr
    and weight decay, example.ipynb's batch, patience, PLE, shared batches and quantile inputs."""
    import inspect

    d = TabMConfig()
    assert (d.k, d.d_block, d.dropout, d.lr, d.weight_decay) == (32, 512, 0.1, 0.002, 0.0003)
    assert (d.batch_size, d.patience, d.share_batches, d.numeric) == (256, 16, True, "quantile")
    assert (d.embedding, d.bins, d.embedding_dim, d.variant) == ("ple", 48, 16, "tabm")
    assert tabm.architecture(data, d, tabm_family.train_quantiles(data, d))["n_blocks"] == 2
    assert tabm.architecture(data, TabMConfig(embedding="none", numeric="standard"))["n_blocks"] == 3
    tabm_package = pytest.importorskip("tabm")
    source = inspect.getsource(tabm_package.TabM.make)
    for text in ("'n_blocks': 2 if has_num_embeddings else 3", "'d_block': 512", "'dropout': 0.1", "'k': 32"):
        assert text in source


def test_tabm_learns_one_model_many_members(data):
    fit = tabm_family.fit(data, TabMConfig(**{**FAST_TABM, "epochs": 40, "patience": 0, "lr": 0.01}))
    valid = fit.history["valid_loss"]
    assert min(valid) < 0.2 * np.var(data.y_valid) and fit.info["members"] == 4
    pred = tabm_family.predict(fit.model, data.x_valid)
    assert float(np.mean((pred - data.y_valid) ** 2)) == pytest.approx(min(valid), rel=1e-5)


# ------------------------------------------------------------------ both families: the engine's promises

FAMILIES = [(realmlp_family, RealMLPConfig, FAST_REALMLP), (tabm_family, TabMConfig, FAST_TABM)]


@pytest.mark.parametrize("family,config,fast", FAMILIES)
def test_the_same_seed_gives_the_same_model(data, family, config, fast):
    a, b = family.fit(data, config(**fast)), family.fit(data, config(**fast))
    c = family.fit(data, config(**fast, seed=7))
    assert a.history == b.history and a.history != c.history
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("family,config,fast", FAMILIES)
def test_early_stopping_keeps_the_best_weights(data, family, config, fast):
    cfg = config(**{**fast, "epochs": 200, "patience": 3, "lr": 0.05})
    fit = family.fit(data, cfg)
    valid = fit.history["valid_loss"]
    assert len(valid) < 200 and len(valid) - fit.info["best_epoch"] == 3
    pred = family.predict(fit.model, data.x_valid)
    assert float(np.mean((pred - data.y_valid) ** 2)) == pytest.approx(min(valid), rel=1e-5)


@pytest.mark.parametrize("family,config,fast", FAMILIES)
def test_a_diverging_fit_stops_with_a_clear_error(data, family, config, fast):
    settings = {**fast, "lr": 1e30}
    if config is RealMLPConfig:
        settings["lr_schedule"] = "constant"
    with pytest.raises(TrainingDiverged, match=r"after epoch 1: training diverged \(lower the learning rate\)"):
        family.fit(data, config(**settings))


@pytest.mark.parametrize("family,config,fast", FAMILIES)
def test_save_and_load_predict_the_same(tmp_path, data, family, config, fast):
    fit = family.fit(data, config(**fast))
    family.save(fit, tmp_path)
    loaded = family.load(tmp_path)
    np.testing.assert_array_equal(family.predict(loaded, data.x_valid), family.predict(fit.model, data.x_valid))


def test_explicit_cuda_without_a_gpu_is_a_clear_error(data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        tabm.fit(data, TabMConfig(**{**FAST_TABM, "device": "cuda"}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family,config,fast", FAMILIES)
def test_cuda_trains_like_the_cpu(data, family, config, fast):
    cpu = family.fit(data, config(**fast))
    gpu = family.fit(data, config(**{**fast, "device": "cuda"}))
    assert gpu.info["device"].startswith("cuda")
    np.testing.assert_allclose(family.predict(gpu.model, data.x_valid), family.predict(cpu.model, data.x_valid),
                               rtol=0.05, atol=0.05)


# ------------------------------------------------------------------ settings

@pytest.mark.parametrize("config,setting,value,message", [
    (RealMLPConfig, "hidden", (), "name at least one width"),
    (RealMLPConfig, "hidden", (8, 0), "each at least 1"),
    (RealMLPConfig, "frequencies", 0, "at least 1"),
    (RealMLPConfig, "embedding_dim", 1, "at least 2"),
    (RealMLPConfig, "embedding_scale", 0.0, "positive"),
    (RealMLPConfig, "lr", 0.0, "positive"),
    (RealMLPConfig, "weight_decay", -1.0, "not be negative"),
    (RealMLPConfig, "dropout", 1.0, r"\[0, 1\)"),
    (RealMLPConfig, "beta2", 1.0, r"\[0, 1\)"),
    (RealMLPConfig, "batch_size", 0, "at least 1"),
    (RealMLPConfig, "epochs", 0, "at least 1"),
    (RealMLPConfig, "patience", -1, "not be negative"),
    (RealMLPConfig, "threads", -1, "not be negative"),
    (RealMLPConfig, "max_seconds", -1.0, "not be negative"),
    (TabMConfig, "k", 0, "at least 1"),
    (TabMConfig, "d_block", 0, "at least 1"),
    (TabMConfig, "n_blocks", -1, "not be negative"),
    (TabMConfig, "dropout", -0.1, r"\[0, 1\)"),
    (TabMConfig, "bins", 1, "at least 2"),
    (TabMConfig, "embedding_dim", 0, "at least 1"),
    (TabMConfig, "frequencies", 0, "at least 1"),
    (TabMConfig, "embedding_scale", -1.0, "positive"),
    (TabMConfig, "lr", -1.0, "positive"),
    (TabMConfig, "weight_decay", -1.0, "not be negative"),
    (TabMConfig, "batch_size", 0, "at least 1"),
    (TabMConfig, "epochs", 0, "at least 1"),
    (TabMConfig, "patience", -1, "not be negative"),
    (TabMConfig, "threads", -1, "not be negative"),
    (TabMConfig, "max_seconds", -1.0, "not be negative"),
    (TabMConfig, "numeric", "robust", "is not one of: quantile, standard"),
])
def test_each_setting_is_checked(config, setting, value, message):
    section = "realmlp" if config is RealMLPConfig else "tabm"
    with pytest.raises(ConfigError, match=rf"^{section}\.{setting} = .*{message}"):
        config(**{setting: value})


def test_a_periodic_tabm_needs_two_values_per_column():
    TabMConfig(embedding="ple", embedding_dim=1)
    with pytest.raises(ConfigError, match=r"^tabm\.embedding_dim = 1: .*periodic"):
        TabMConfig(embedding="periodic", embedding_dim=1)


# ------------------------------------------------------------------ time limits: the scored epoch, and no overshoot


def _long_valid(data: Data) -> Data:
    """data with its valid rows four times over (600): an evaluation of three passes of EVAL_ROWS."""
    return dataclasses.replace(data, x_valid=np.tile(data.x_valid, (4, 1)), y_valid=np.tile(data.y_valid, 4))


@pytest.mark.parametrize("kind", ["realmlp", "tabm"])
def test_a_fit_hands_back_its_kept_epochs_valid_predictions_as_a_new_prediction_gives_them(data, kind):
    """Unlimited and limited: models.training.fit_predict takes them instead of predicting valid again, and a new
    prediction on the fit's threads gives them to the bit (both go EVAL_ROWS rows a pass)."""
    fam, cfg_type, fast = ((realmlp_family, RealMLPConfig, FAST_REALMLP) if kind == "realmlp"
                           else (tabm_family, TabMConfig, FAST_TABM))
    long = _long_valid(data)
    assert len(long.x_valid) > 2 * EVAL_ROWS
    for limit in (0.0, 1000.0):
        fit = fam.fit(long, cfg_type(**{**fast, "max_seconds": limit}))
        assert fit.valid_pred is not None and fit.valid_pred.shape == long.y_valid.shape
        with using_threads(fast["threads"]):
            np.testing.assert_array_equal(fit.valid_pred, fam.predict(fit.model, long.x_valid))


@pytest.mark.parametrize("kind", ["realmlp", "tabm"])
def test_a_fit_whose_first_evaluation_outlasts_its_limit_keeps_nothing(data, kind):
    """A limit that the first batch reaches: the evaluation of valid (600 rows, EVAL_ROWS a pass) stops at the limit
    instead of running to its end, and with no epoch scored the fit has no model (TrainingCut, one line)."""
    from tabduel.engine.torchfit import TrainingCut

    fam, cfg_type, fast = ((realmlp_family, RealMLPConfig, FAST_REALMLP) if kind == "realmlp"
                           else (tabm_family, TabMConfig, FAST_TABM))
    with pytest.raises(TrainingCut, match=r"^stopped at its limit of 1e-06 s before it scored an epoch on valid"):
        fam.fit(_long_valid(data), cfg_type(**{**fast, "batch_size": 16, "max_seconds": 1e-6}))
