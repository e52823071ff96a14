"""The training engine against torch's own autograd and optimizers, and a population against its members alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tabduel.engine import memory, net, population, single
from tabduel.engine.data import Data
from tabduel.engine.optim import Optimizer
from tabduel.infra.config import MLPConfig
from tabduel.infra.errors import CapacityError
from tabduel.infra.runtime import _cgroup_cores, free_cores, torch_threads, using_threads
from tabduel.models import mlp


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 6)).astype(np.float32)
    y = (np.tanh(x[:, 0]) + 0.4 * x[:, 1] * x[:, 2] + rng.normal(0, 0.05, 700)).astype(np.float32)
    return Data(x[:500], y[:500], x[500:], y[500:], tuple("abcdef"))


def _autograd_grads(params: net.Params, x, y, activation, keep, seed):
    """Gradients of the summed per-member mean squared error, by autograd through the same forward pass."""
    leaves = [t.clone().requires_grad_() for t in params.tensors()]
    p = net.Params(leaves[0::2], leaves[1::2])
    gen = torch.Generator().manual_seed(seed)
    pred = net.forward(p, x, activation, keep, gen)
    ((pred - y) ** 2).mean(dim=-1).sum().backward()
    return [t.grad for t in leaves]


@pytest.mark.parametrize("activation", net.ACTIVATIONS)
@pytest.mark.parametrize("members", [None, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_backward_matches_autograd(activation, members, dropout):
    torch.manual_seed(0)
    sizes = (5, 7, 4)
    if members is None:
        params = net.init_params(sizes[0], sizes[1:], seed=3)
        x, y = torch.randn(5, 16), torch.randn(1, 16)  # (features, batch), (1, batch)
        keep = 1 - dropout if dropout else None
    else:
        params = net.stack([net.init_params(sizes[0], sizes[1:], seed=s) for s in range(members)])
        x, y = torch.randn(members, 5, 16), torch.randn(members, 1, 16)
        keep = torch.tensor([1.0, 1 - dropout, 0.5]).view(3, 1, 1) if dropout else None
    expected = _autograd_grads(params, x, y, activation, keep, seed=9)
    tape = net.Tape([], [], [], [])
    with torch.no_grad():
        pred = net.forward(params, x, activation, keep, torch.Generator().manual_seed(9), tape)
        grads = net.backward(params, tape, (pred - y) * (2.0 / x.shape[-1]), activation)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_shared_batch_gives_the_same_gradients_as_copies():
    params = net.stack([net.init_params(4, (6,), seed=s) for s in range(3)])
    x, y = torch.randn(4, 10), torch.randn(1, 10)
    out = []
    for xb in (x, x.expand(3, 4, 10).contiguous()):
        tape = net.Tape([], [], [], [])
        pred = net.forward(params, xb, "relu", tape=tape)
        out.append(net.backward(params, tape, (pred - y) * 0.2, "relu"))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b)


def test_init_is_torch_nn_linear_init_from_the_seed():
    torch.manual_seed(42)
    ref = net.build_mlp(6, (8, 3), "sigmoid", 0.0)
    params = net.init_params(6, (8, 3), seed=42)
    linears = [m for m in ref if isinstance(m, torch.nn.Linear)]
    for layer, w, b in zip(linears, params.weights, params.biases):
        torch.testing.assert_close(w, layer.weight.detach(), rtol=0, atol=0)
        torch.testing.assert_close(b.squeeze(1), layer.bias.detach(), rtol=0, atol=0)


def test_to_sequential_predicts_like_the_engine():
    params = net.init_params(6, (8, 3), seed=1)
    x = torch.randn(20, 6)
    seq = net.to_sequential(params, "gelu", 0.2)
    with torch.no_grad():
        torch.testing.assert_close(seq(x).t(), net.forward(params, x.t(), "gelu"))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("per_member", [False, True])
def test_optimizer_matches_torch_optim(name, per_member):
    torch.manual_seed(0)
    lrs, wds = [0.05, 0.01], [0.0, 0.1]
    start = [torch.randn(2, 4, 3), torch.randn(2, 4, 1)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    torch_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    for k in range(2):  # the reference: each member alone with torch.optim
        ref = [p[k].clone().requires_grad_() for p in start]
        opt = torch_cls(ref, lr=lrs[k], weight_decay=wds[k])
        for step in grads:
            for p, g in zip(ref, step):
                p.grad = g[k].clone()
            opt.step()
        if per_member:
            ours = [p.clone() for p in start]
            o = Optimizer(name, ours, torch.tensor(lrs).view(2, 1, 1), torch.tensor(wds).view(2, 1, 1))
            for step in grads:
                o.step(ours, [g.clone() for g in step])
            got = [p[k] for p in ours]
        else:
            got = [p[k].clone() for p in start]
            o = Optimizer(name, got, lrs[k], wds[k])
            for step in grads:
                o.step(got, [g[k].clone() for g in step])
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_single_model_matches_a_plain_torch_training_loop(data):
    """The engine against nn.Sequential + autograd + torch.optim.SGD on the same batches."""
    cfg = MLPConfig(hidden=(20, 10, 5), epochs=3, batch_size=64, device="cpu", seed=7)
    got = single.fit(data, cfg)
    torch.manual_seed(7)
    ref = net.build_mlp(6, cfg.hidden, cfg.activation, 0.0)
    opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).unsqueeze(1)
    order = torch.Generator().manual_seed(7)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad()
            F.mse_loss(ref(x[idx]), y[idx]).backward()
            opt.step()
    want = mlp.predict(ref.eval(), data.x_valid)
    have = mlp.predict(net.to_sequential(got.params, cfg.activation, 0.0), data.x_valid)
    np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)
    assert got.history["valid_loss"][-1] == pytest.approx(float(np.mean((want - data.y_valid) ** 2)), rel=1e-4)


def _assert_same_model(a: single.SingleFit, b: single.SingleFit) -> None:
    for x, y in zip(a.params.tensors(), b.params.tensors()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert a.info["epochs_run"] == b.info["epochs_run"]
    assert a.info["best_epoch"] == b.info["best_epoch"]
    np.testing.assert_allclose(a.history["valid_loss"], b.history["valid_loss"], rtol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_member_trains_exactly_as_it_would_alone(data, optimizer):
    cfg = MLPConfig(hidden=(16, 8), activation="silu", optimizer=optimizer, epochs=25, patience=3, batch_size=50,
                    device="cpu")
    lrs = (0.2, 0.05, 0.01, 0.3) if optimizer == "sgd" else (0.03, 0.01, 0.003, 0.05)
    members = [population.Member(seed=s, lr=lr, weight_decay=wd) for s, lr, wd in
               zip((1, 2, 3, 4), lrs, (0.0, 0.01, 0.0, 0.1))]
    pop = population.fit(data, cfg, members)
    stops = {int(e) for e in pop.info["epochs_run"]}
    assert len(stops) > 1, "the test needs members that stop at different epochs"
    assert pop.info["member_epochs"] == int(pop.info["epochs_run"].sum()) < len(members) * cfg.epochs
    for k, m in enumerate(members):
        alone = single.fit(data, MLPConfig(**{**cfg.__dict__, "seed": m.seed, "lr": m.lr,
                                              "weight_decay": m.weight_decay}))
        _assert_same_model(pop.single(k), alone)


@pytest.mark.slow
def test_a_compiled_population_step_trains_as_the_eager_one(data):
    cfg = MLPConfig(hidden=(8,), epochs=2, batch_size=250, device="cpu")
    members = population.members_of(cfg, 2)
    eager = population.fit(data, cfg, members)
    compiled = population.fit(data, cfg, members, compile=True)
    for a, b in zip(eager.params.tensors(), compiled.params.tensors()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_early_stopped_members_keep_their_best_weights(data):
    cfg = MLPConfig(hidden=(32,), activation="relu", optimizer="adam", epochs=60, patience=4, batch_size=32,
                    device="cpu")
    pop = population.fit(data, cfg, [population.Member(seed=s, lr=0.05) for s in range(3)])
    x = torch.from_numpy(data.x_valid).t()
    with torch.no_grad():
        pred = net.forward(pop.params, x, "relu").squeeze(1)  # (K, n_valid)
    mse = ((pred - torch.from_numpy(data.y_valid)) ** 2).mean(dim=1).numpy()
    np.testing.assert_allclose(mse, pop.info["best_valid_loss"], rtol=1e-4)
    assert np.all(pop.info["epochs_run"] - pop.info["best_epoch"] == 4)


def test_shared_batch_order_trains_every_member_on_one_permutation(data):
    cfg = MLPConfig(hidden=(8,), epochs=4, batch_size=100, device="cpu", batch_order="shared")
    members = [population.Member(seed=5, lr=0.1), population.Member(seed=9, lr=0.1)]
    pop = population.fit(data, cfg, members)
    # Member 0 owns the shared permutation stream, so it trains as it would alone.
    alone = single.fit(data, MLPConfig(hidden=(8,), epochs=4, batch_size=100, device="cpu", seed=5, lr=0.1))
    _assert_same_model(pop.single(0), alone)
    other = single.fit(data, MLPConfig(hidden=(8,), epochs=4, batch_size=100, device="cpu", seed=9, lr=0.1))
    assert not torch.allclose(pop.single(1).params.weights[0], other.params.weights[0])


def test_fit_many_groups_configs_by_shape_and_keeps_their_order(data):
    a = MLPConfig(hidden=(8,), epochs=3, batch_size=100, device="cpu")
    b = MLPConfig(hidden=(4, 4), epochs=3, batch_size=100, device="cpu")
    c = MLPConfig(hidden=(5,), epochs=3, batch_size=100, device="cpu")
    configs = [a, b, MLPConfig(**{**a.__dict__, "seed": 3, "lr": 0.01}), c, MLPConfig(**{**b.__dict__, "seed": 8})]
    results = population.fit_many(data, configs)
    assert [r.info.get("population", 1) for r in results] == [2, 2, 2, 1, 2]
    for cfg, result in zip(configs, results):
        _assert_same_model(result, single.fit(data, cfg))


def test_ensemble_predicts_the_members_mean_and_round_trips(tmp_path, data):
    cfg = MLPConfig(hidden=(8, 4), epochs=3, batch_size=100, device="cpu", population=3)
    fit = mlp.fit(data, cfg)
    assert [m["seed"] for m in fit.members] == [cfg.seed, cfg.seed + 1, cfg.seed + 2]
    members = torch.stack([net.forward(net.member(net.Params(list(fit.model.weights), list(fit.model.biases)), k),
                                       torch.from_numpy(data.x_valid).t(), "sigmoid")[0] for k in range(3)])
    np.testing.assert_allclose(mlp.predict(fit.model, data.x_valid), members.mean(0).detach().numpy(), rtol=1e-5)
    mse = np.mean((members.mean(0).detach().numpy() - data.y_valid) ** 2)
    assert fit.info["ensemble_valid_mse"] == pytest.approx(mse, rel=1e-5)
    mlp.save(fit, tmp_path)
    assert (tmp_path / "members.csv").read_text().splitlines()[0].startswith("member,seed,lr")
    np.testing.assert_array_equal(mlp.predict(mlp.load(tmp_path), data.x_valid), mlp.predict(fit.model, data.x_valid))


def test_memory_estimate_is_linear_in_members():
    def need(k):
        return memory.population_bytes(k, 14, (256, 256, 256), 200, "adamw", True, False, 1752)
    assert need(200) - need(100) == need(300) - need(200) > 0


MEASURE_PEAK = """
import sys
import numpy as np
from tabduel.infra.config import MLPConfig
from tabduel.engine import population
from tabduel.engine.data import Data
rng = np.random.default_rng(0)
x = rng.normal(size=(6000, 14)).astype(np.float32)
y = rng.normal(size=6000).astype(np.float32)
data = Data(x[:4000], y[:4000], x[4000:], y[4000:], tuple("abcdefghijklmn"))
cfg = MLPConfig(hidden=tuple(map(int, sys.argv[2].split(","))), optimizer=sys.argv[3], epochs=1, patience=2,
                device="cpu")
def high_water():  # VmHWM: this process's own peak (ru_maxrss also counts the parent's, from before exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
population.fit(data, cfg, population.members_of(cfg, 2))  # libraries and kernels warmed up
before = high_water()
fit = population.fit(data, cfg, population.members_of(cfg, int(sys.argv[1])))
print(high_water() - before, fit.info["estimated_bytes"])
"""


@pytest.mark.parametrize("members, hidden, optimizer", [(512, "20,10,5", "sgd"), (128, "128,128", "adamw")])
def test_the_memory_estimate_covers_the_measured_peak(members, hidden, optimizer):
    """The refusal is only as good as the estimate: a fresh process's peak RSS growth stays under it."""
    out = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(members), hidden, optimizer],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    grew, estimate = int(out[0]), int(out[1])
    assert 0 < grew <= estimate, f"peak RSS grew {grew / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB"


def test_a_population_that_does_not_fit_is_refused_before_training(data):
    cfg = MLPConfig(hidden=(64, 64), epochs=2, device="cpu")
    available = int(population.required_bytes(data, cfg, 20) / memory.HEADROOM) + 1
    with pytest.raises(CapacityError, match=r"population of 50 MLPs 6-64-64-1 needs about .* at most 20 members"):
        population.fit(data, cfg, population.members_of(cfg, 50), available=available)
    assert population.fit(data, cfg, population.members_of(cfg, 20), available=available).info["members"] == 20


def test_threads_never_exceed_the_free_cores():
    cores = free_cores()
    assert torch_threads(0, 10_000) == 1  # a small step runs on one thread
    assert torch_threads(0, 10 ** 9) == cores
    assert torch_threads(cores + 7, 10 ** 9) == cores
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("content, cores", [("150000 100000", 1.5), ("max 100000", None)])
def test_cgroup_cpu_quota_is_read(tmp_path, content, cores):
    (tmp_path / "cpu.max").write_text(content + "\n")
    assert _cgroup_cores(tmp_path) == cores
