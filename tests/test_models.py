"""The models against their math: shapes, the KL closed form, the MDN likelihood by hand,
the controller's size and bounds."""

import math

import numpy as np
import pytest
import torch

from wm.controller import Controller, n_params
from wm.mdnrnn import MDNRNN, mdn_nll, mdnrnn_loss, sample_z
from wm.vae import ConvVAE, kl_divergence, to_frames, to_input, vae_loss


@pytest.mark.parametrize("z_dim", [8, 32])
def test_vae_shapes(z_dim):
    vae = ConvVAE(z_dim)
    x = torch.rand(5, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == (5, 3, 64, 64)
    assert mu.shape == logvar.shape == (5, z_dim)
    assert recon.min() >= 0 and recon.max() <= 1


def test_vae_has_the_papers_parameter_count():
    assert sum(p.numel() for p in ConvVAE(32).parameters()) == 4_348_547


def test_mdnrnn_has_the_papers_parameter_count():
    # the paper's 422,368 (TensorFlow) + PyTorch's second LSTM bias (4 x 256)
    # + the reward and done heads (2 outputs x (256 weights + 1 bias))
    assert sum(p.numel() for p in MDNRNN(32, 3, 256, 5).parameters()) == 422_368 + 4 * 256 + 2 * 257


def test_frames_round_trip_through_model_input():
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    x = to_input(frames, "cpu")
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    np.testing.assert_array_equal(to_frames(x), frames)


def test_kl_matches_closed_form_per_dimension():
    mu = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[math.log(0.25), math.log(2.0)]])
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2) / 2 - 1/2, summed over dims
    expected = sum(math.log(1 / s) + (s**2 + m**2) / 2 - 0.5 for m, s in [(0.5, 0.5), (-1.0, math.sqrt(2.0))])
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max().item() < 1e-7


def test_kl_tolerance_floors_each_samples_kl_as_the_papers_code():
    x = torch.rand(2, 3, 64, 64)
    # sample 0 sits on the prior (KL 0), sample 1 has KL 8 (mu 2 in each of 4 dims: 4 x 2^2 / 2)
    mu, logvar = torch.tensor([[0.0] * 4, [2.0] * 4]), torch.zeros(2, 4)
    losses = vae_loss(x, x, mu, logvar, kl_tolerance=0.5)  # floor: 0.5 x 4 = 2 nats per sample
    assert losses.reconstruction.item() == 0 and losses.kl.item() == pytest.approx(4.0)  # unfloored mean
    # per sample: mean(max(0, 2), max(8, 2)) = 5; a floor on the batch mean would give max(4, 2) = 4
    assert losses.total.item() == pytest.approx(5.0)
    assert vae_loss(x, x, mu, logvar).total.item() == pytest.approx(4.0)  # no tolerance, no floor


def test_mdn_nll_single_gaussian_by_hand():
    y, m, s = 0.3, -0.2, 0.7
    log_pi = torch.zeros(1, 1, 1, 1)  # one component, weight 1
    nll = mdn_nll(
        log_pi, torch.full((1, 1, 1, 1), m), torch.full((1, 1, 1, 1), math.log(s)), torch.full((1, 1, 1), y)
    )
    expected = 0.5 * math.log(2 * math.pi) + math.log(s) + 0.5 * ((y - m) / s) ** 2
    assert nll.item() == pytest.approx(expected, rel=1e-6)


def test_mdn_nll_two_equal_components_equal_one():
    target = torch.randn(2, 3, 4)
    mu, log_sigma = torch.randn(2, 3, 4, 1), torch.randn(2, 3, 4, 1) * 0.1
    one = mdn_nll(torch.zeros(2, 3, 4, 1), mu, log_sigma, target)
    two = mdn_nll(
        torch.full((2, 3, 4, 2), math.log(0.5)), mu.repeat(1, 1, 1, 2), log_sigma.repeat(1, 1, 1, 2), target
    )
    torch.testing.assert_close(one, two)


def test_mdnrnn_shapes_and_masked_loss():
    model = MDNRNN(z_dim=6, hidden=16, mixtures=3)
    z, action = torch.randn(2, 7, 6), torch.rand(2, 7, 3)
    outputs, (h, c) = model(z, action)
    assert outputs.log_pi.shape == outputs.mu.shape == outputs.log_sigma.shape == (2, 7, 6, 3)
    assert outputs.reward.shape == outputs.done_logit.shape == (2, 7)
    assert h.shape == c.shape == (1, 2, 16)
    torch.testing.assert_close(outputs.log_pi.exp().sum(-1), torch.ones(2, 7, 6))
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 3:] = False
    total, nll, reward_mse, done_bce = mdnrnn_loss(
        outputs, torch.randn(2, 7, 6), torch.zeros(2, 7), torch.zeros(2, 7), mask
    )
    assert torch.isfinite(total) and total.item() == pytest.approx((nll + reward_mse + done_bce).item())
    # padded steps do not change the loss, whatever their targets
    garbage = torch.randn(2, 7, 6)
    garbage[:, :, :] = 0
    a = mdnrnn_loss(outputs, garbage, torch.zeros(2, 7), torch.zeros(2, 7), mask)[0]
    garbage[1, 3:] = 1e3
    b = mdnrnn_loss(outputs, garbage, torch.zeros(2, 7), torch.zeros(2, 7), mask)[0]
    assert a.item() == pytest.approx(b.item())


def test_sample_z_picks_components_by_weight_and_tau_sharpens():
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    log_pi = torch.log(torch.tensor([0.8, 0.2])).expand(n, 1, 2)
    mu = torch.tensor([-10.0, 10.0]).expand(n, 1, 2)
    log_sigma = torch.full((n, 1, 2), -5.0)
    z = sample_z(log_pi, mu, log_sigma, tau=1.0, generator=generator)
    assert z.shape == (n, 1)
    assert (z < 0).float().mean().item() == pytest.approx(0.8, abs=0.02)
    cold = sample_z(log_pi, mu, log_sigma, tau=0.1, generator=generator)
    assert (cold < 0).float().mean().item() > 0.99


def test_controller_size_and_action_bounds():
    assert n_params(32, 256) == 867
    rng = np.random.default_rng(0)
    controller = Controller(32, 256, 0, rng.standard_normal(867) * 10)
    actions = controller.act(rng.standard_normal((100, 32)) * 10, rng.standard_normal((100, 256)))
    assert actions.shape == (100, 3) and actions.dtype == np.float32
    assert actions[:, 0].min() >= -1 and actions[:, 0].max() <= 1
    assert actions[:, 1:].min() >= 0 and actions[:, 1:].max() <= 1
    np.testing.assert_array_equal(Controller(32, 256, 0, controller.params).params, controller.params)
    # CMA-ES starts at zero: half throttle, no brake, straight ahead
    np.testing.assert_array_equal(Controller(4, 6).act(np.ones((1, 4)), np.ones((1, 6))), [[0, 0.5, 0]])
    with pytest.raises(ValueError, match="867"):
        Controller(32, 256, 0, np.zeros(10))


def test_controller_variants_compute_what_they_say():
    # the paper's z-only controllers: linear (32*3+3) and with 40 hidden units
    assert n_params(32, 0) == 99 and n_params(32, 0, hidden=40) == 32 * 40 + 40 + 40 * 3 + 3
    rng = np.random.default_rng(1)
    z, h = rng.standard_normal((5, 4)), rng.standard_normal((5, 6))
    deep = Controller(4, 6, 7, rng.standard_normal(n_params(4, 6, 7)))
    w1 = deep.params[:70].reshape(7, 10)
    b1 = deep.params[70:77]
    w2 = deep.params[77:98].reshape(3, 7)
    b2 = deep.params[98:]
    a = np.tanh(np.tanh(np.concatenate([z, h], 1) @ w1.T + b1) @ w2.T + b2)
    expected = np.stack([a[:, 0], (a[:, 1] + 1) / 2, a[:, 2].clip(0)], 1)
    np.testing.assert_allclose(deep.act(z, h), expected, rtol=1e-5, atol=1e-6)
    z_only = Controller(4, 0, 0, rng.standard_normal(15))
    a = np.tanh(z @ z_only.params[:12].reshape(3, 4).T + z_only.params[12:])
    np.testing.assert_allclose(z_only.act(z)[:, 0], a[:, 0], rtol=1e-5, atol=1e-6)


def test_dream_cell_steps_like_the_lstm_and_returns_per_rollout():
    from wm.dream import dream_returns, lstm_cell

    model = MDNRNN(z_dim=4, hidden=8, mixtures=2).eval()
    x = torch.randn(5, 7)
    with torch.inference_mode():
        out, (h, c) = model.lstm(x[:, None])
        h_cell, c_cell = lstm_cell(model)(x)
    torch.testing.assert_close(h_cell, h[0])
    torch.testing.assert_close(c_cell, c[0])
    controller = Controller(4, 8)
    params = np.zeros((3, controller.size), np.float32)
    generator = torch.Generator().manual_seed(0)
    returns = dream_returns(
        model, controller, params, torch.zeros(3, 4), steps=5, tau=1.0, generator=generator
    )
    assert returns.shape == (3,) and torch.isfinite(returns).all()
    # identical controllers from identical starts get identical predicted returns until sampling
    # splits them; with one step, nothing has been sampled yet
    one = dream_returns(model, controller, params, torch.zeros(3, 4), steps=1, tau=1.0, generator=generator)
    assert torch.allclose(one, one[0].expand(3))
    # a z-only controller dreams too (the LSTM still carries the dream)
    z_only = Controller(4, 0)
    returns = dream_returns(model, z_only, np.zeros((2, z_only.size)), torch.zeros(2, 4), steps=3, tau=1.0)
    assert returns.shape == (2,)


def test_dream_steps_feed_back_their_samples_as_the_mdnrnn_reads_a_sequence():
    from wm.dream import dream_steps

    model = MDNRNN(z_dim=4, hidden=8, mixtures=2).eval()
    z0, actions = torch.randn(3, 4), torch.randn(3, 6, 3)  # (B, Z), (B, T, A)
    recorded = iter(actions.unbind(1))
    seen = []  # h as each act call saw it
    dream = dream_steps(
        model,
        lambda z, h: seen.append(h) or next(recorded),
        z0,
        steps=6,
        tau=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    zs, predictions = zip(*dream)
    # the same z's and actions as one sequence through M's own forward (nn.LSTM)
    inputs = torch.stack([z0, *zs[:-1]], 1)  # (B, T, Z): each step's input z
    with torch.inference_mode():
        prediction, _ = model(inputs, actions)
    for t in range(6):
        torch.testing.assert_close(predictions[t].mu[:, 0], prediction.mu[:, t])
        torch.testing.assert_close(predictions[t].reward[:, 0], prediction.reward[:, t])
    assert torch.equal(seen[0], torch.zeros(3, 8)) and len(seen) == 6
    # each step's z is a fresh sample: the dream does not replay z0
    assert not torch.allclose(zs[0], z0)


def test_evolve_improves_and_returns_mean_then_best_finalists(tmp_path):
    from wm.evolve import evolve
    from wm.io import open_live

    target = np.linspace(-1, 1, 6)
    with open_live(tmp_path / "live") as live:
        finalists, fitness = evolve(
            lambda generation, candidates: -((np.asarray(candidates) - target) ** 2).sum(1),
            n_params=6,
            population=8,
            generations=40,
            sigma0=0.5,
            seed=0,
            live=live,
            finalists=3,
        )
    assert len(finalists) == 4 and all(f.shape == (6,) for f in finalists)
    assert ((finalists[0] - target) ** 2).sum() < 0.05  # CMA-ES's mean found the optimum
    scores = [-((f - target) ** 2).sum() for f in finalists[1:]]
    assert scores == sorted(scores, reverse=True)
    assert fitness.shape == (40, 8) and scores[0] == pytest.approx(fitness.max(), rel=1e-4)  # float32 params


def test_projection_searches_the_first_layer_on_whitened_principal_components():
    from wm.controller import Projection, actions_from, principal_components

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6)) + 3  # correlated inputs: z (4), h (2)
    mean, cov = x.mean(0), np.cov(x, rowvar=False)
    p = principal_components(mean, cov, 3)
    np.testing.assert_allclose(np.cov((x - mean) @ p.T, rowvar=False), np.eye(3), atol=1e-9)  # whitened
    np.testing.assert_array_equal(principal_components(mean, cov, 3), p)  # the same data, the same P
    controller = Controller(4, 2)
    search = Projection(controller, p, mean)
    assert search.size == 3 * 3 + 3  # out x k weights and the biases, instead of out x 6
    v = rng.standard_normal(search.size)
    full = search.full(v)
    assert full.shape == (1, controller.size) and full.dtype == np.float32
    acts = Controller(4, 2, 0, full[0]).act(x[:, :4].astype(np.float32), x[:, 4:].astype(np.float32))
    components = torch.from_numpy(((x - mean) @ p.T) @ v[:9].reshape(3, 3).T + v[9:]).float()
    np.testing.assert_allclose(acts, actions_from(torch.tanh(components)).numpy(), atol=1e-4)
    np.testing.assert_allclose(search.full(search.reduced(full[0]))[0], full[0], atol=1e-4)  # goes back


def test_racing_drives_the_better_half_on_the_rest_of_the_tracks():
    """rollouts 4, race 1: all 4 candidates drive the first track, the 2 best of them the other 3;
    fitness is each one's mean over the tracks it drove (a return here: candidate value + track)."""
    from wm.env import track_seeds
    from wm.evolve import RealScore
    from wm.rollout import Rollout

    drives = []

    class Recording:  # an executor that records what it is asked to drive
        def drive(self, agent, seeds, batch_size, *, controllers, desc=None):
            drives.append((list(seeds), controllers[:, 0].tolist()))
            return [Rollout(s, total_reward=float(c[0]) + s % 10) for s, c in zip(seeds, controllers)]

    candidates = [np.full(2, v, np.float32) for v in (5.0, 1.0, 3.0, 2.0)]
    seeds = track_seeds("controller", 4, start=4)  # generation 1 of rollouts 4
    fitness = RealScore(Recording(), None, batch_size=8, rollouts=4, race=1)(1, candidates)
    assert drives == [(seeds[:1] * 4, [5.0, 1.0, 3.0, 2.0]), (seeds[1:] * 2, [5.0] * 3 + [3.0] * 3)]
    tracks = np.array([s % 10 for s in seeds], float)
    assert fitness.tolist() == [5 + tracks.mean(), 1 + tracks[0], 3 + tracks.mean(), 2 + tracks[0]]


def test_evolve_goes_on_from_x0(tmp_path):
    # a round of the iterative procedure evolves on from the last round's controller
    from wm.evolve import evolve
    from wm.io import open_live

    x0, asked = np.linspace(-1, 1, 6), []

    def score(generation, candidates):
        asked.append(np.asarray(candidates))
        return -((np.asarray(candidates) - x0) ** 2).sum(1)

    with open_live(tmp_path / "live") as live:
        evolve(score, 6, population=64, generations=1, sigma0=0.01, seed=0, live=live, finalists=0, x0=x0)
    np.testing.assert_allclose(asked[0].mean(0), x0, atol=0.01)  # sampled around x0, not zeros


def test_evolve_resumes_after_a_kill_with_the_bytes_of_an_uninterrupted_run(tmp_path):
    from wm.evolve import Progress, evolve
    from wm.io import open_live

    target = np.linspace(-1, 1, 6)
    scored = []

    def score(generation, candidates):
        if generation == kill_at:
            raise KeyboardInterrupt  # the stage dies here
        scored.append(generation)
        return -((np.asarray(candidates) - target) ** 2).sum(1)

    def watch(candidate):  # the readout of each generation's best (the real env's, in the stage)
        watched.append(candidate)
        return float(np.abs(candidate).sum())

    def run(live_dir, progress):
        with open_live(tmp_path / live_dir) as live:
            return evolve(
                score,
                n_params=6,
                population=8,
                generations=10,
                sigma0=0.5,
                seed=0,
                live=live,
                finalists=3,
                progress=progress,
                watch=watch,
            )

    kill_at, watched = None, []
    whole, whole_fitness = run("whole", None)
    assert len(watched) == 10
    scored.clear()
    path = tmp_path / "progress" / "controller.npz"
    kill_at = 6
    with pytest.raises(KeyboardInterrupt):
        run("killed", Progress(path, "key"))
    assert scored == [0, 1, 2, 3, 4, 5] and len(Progress(path, "key")) == 6
    kill_at, scored[:], watched[:] = None, [], []
    resumed, resumed_fitness = run("resumed", Progress(path, "key"))
    assert scored == [6, 7, 8, 9]  # only the generations the killed run had not finished
    assert len(watched) == 4  # and only their best candidates are watched; the rest is replayed
    for a, b in zip(whole, resumed):
        assert a.tobytes() == b.tobytes()
    assert whole_fitness.tobytes() == resumed_fitness.tobytes()
    for logged in ("metrics.json", "plots/metrics/watch/real.tsv", "plots/metrics/generation/best.tsv"):
        whole_log, resumed_log = ((tmp_path / d / logged).read_text() for d in ("whole", "resumed"))
        assert whole_log == resumed_log  # the replayed generations are logged again, as if never killed
    assert len(Progress(path, "another key")) == 0  # progress of another run is not used


def test_dream_score_compares_candidates_on_common_starts(monkeypatch):
    from wm import evolve

    dreams = []  # (params, z0) of every dream_returns call

    def spy(mdnrnn, controller, params, z0, **kwargs):
        dreams.append((params, z0))
        return torch.arange(len(z0), dtype=torch.float32)  # rollout i "returns" i

    monkeypatch.setattr(evolve, "dream_returns", spy)
    controller = Controller(4, 8)
    score = evolve.DreamScore(
        MDNRNN(z_dim=4, hidden=8, mixtures=2),
        controller,
        (torch.randn(50, 4), None),
        rollouts=3,
        steps=4,
        tau=1.0,
        seed=0,
    )
    candidates = np.random.default_rng(0).standard_normal((2, controller.size))
    fitness = score(0, candidates)
    np.testing.assert_allclose(fitness, [1.0, 4.0])  # each candidate's mean over its own 3 rollouts
    score(1, candidates)
    (params, z0), (_, z0_next) = dreams
    starts = z0.reshape(2, 3, 4)
    torch.testing.assert_close(starts[0], starts[1])  # both candidates dream from the same 3 starts
    assert len({tuple(z.tolist()) for z in starts[0]}) == 3  # three different starts
    assert not torch.equal(z0_next, z0)  # new starts in the next generation
    np.testing.assert_allclose(params.reshape(2, 3, -1), np.repeat(candidates[:, None], 3, 1), rtol=1e-6)


def test_dropout_masks_give_each_dream_its_own_world_and_train_m_as_they_dream():
    from wm.dream import dream_returns, dropout_masks

    torch.manual_seed(0)
    model = MDNRNN(z_dim=4, hidden=64, mixtures=2).eval()
    controller = Controller(4, 64)
    params = np.zeros((2, controller.size), np.float32)

    def dream(masks):
        return dream_returns(
            model,
            controller,
            params,
            torch.zeros(2, 4),
            steps=1,
            tau=1.0,
            masks=masks,
            generator=torch.Generator().manual_seed(0),
        )

    masks = dropout_masks(2, 64, 0.5, torch.Generator().manual_seed(0))
    assert set(masks.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert 0.3 < (masks > 0).float().mean() < 0.7 and not torch.equal(masks[0], masks[1])
    plain, masked = dream(None), dream(masks)
    assert plain[0] == plain[1]  # one step, nothing sampled yet: the same controller, the same return
    assert masked[0] != masked[1] and not torch.equal(masked, plain)  # each mask, its own dream
    torch.testing.assert_close(dream(dropout_masks(2, 64, 0.0, torch.Generator())), plain)
    # training: dropout on h before the heads only (the state carried on is the same), none in eval
    z, action = torch.randn(2, 5, 4), torch.rand(2, 5, 3)
    (plain, (h, c)), (dropped, (h_d, c_d)) = model(z, action), model(z, action, dropout=0.5)
    torch.testing.assert_close(h, h_d)
    torch.testing.assert_close(c, c_d)
    assert not torch.equal(plain.mu, dropped.mu)


def test_a_joint_mixture_draws_every_dimension_of_z_from_one_component():
    from wm.mdnrnn import likeliest_mean, mdn_nll, sample_z

    torch.manual_seed(0)
    model = MDNRNN(z_dim=4, hidden=16, mixtures=3, joint=True)
    prediction, _ = model(torch.randn(2, 5, 4), torch.rand(2, 5, 3))
    assert prediction.log_pi.shape == (2, 5, 1, 3) and prediction.mu.shape == (2, 5, 4, 3)
    assert model.config["joint"] and "joint" not in MDNRNN(z_dim=4).config  # the paper's: as before
    # components far apart (component k at 100 k in every dimension), equally likely
    mu = (100.0 * torch.arange(3.0)).expand(1000, 4, 3)
    log_sigma, log_pi = torch.full((1000, 4, 3), -5.0), torch.full((1000, 1, 3), -math.log(3))
    z = sample_z(log_pi, mu, log_sigma, generator=torch.Generator().manual_seed(0))
    k = torch.round(z / 100)
    assert (k == k[:, :1]).all() and set(k[:, 0].tolist()) == {0.0, 1.0, 2.0}  # one per z, each drawn
    per_dim = sample_z(log_pi.expand(1000, 4, 3), mu, log_sigma, generator=torch.Generator().manual_seed(0))
    assert not (torch.round(per_dim / 100) == torch.round(per_dim[:, :1] / 100)).all()  # the paper's mixes
    # the loss: the whole z's likelihood under one component at a time, shared out over Z
    target = torch.randn(2, 5, 4)
    p = prediction
    log_prob = torch.distributions.Normal(p.mu, p.log_sigma.exp()).log_prob(target[..., None]).sum(-2)
    expected = -torch.logsumexp(p.log_pi[..., 0, :] + log_prob, -1) / 4
    nll = mdn_nll(p.log_pi, p.mu, p.log_sigma, target)
    torch.testing.assert_close(nll, expected[..., None].expand(2, 5, 4))
    best = p.log_pi[..., 0, :].argmax(-1)[..., None, None].expand(2, 5, 4, 1)  # one component per z
    torch.testing.assert_close(likeliest_mean(p), p.mu.gather(-1, best)[..., 0])


def test_scheduled_sampling_feeds_m_its_own_samples_against_the_real_targets():
    from wm.train_mdnrnn import forward, own_inputs

    torch.manual_seed(0)
    model = MDNRNN(z_dim=4, hidden=16, mixtures=2)
    z, action = torch.randn(3, 6, 4), torch.rand(3, 6, 3)
    teacher, state = model(z, action)
    stepped, stepped_state = own_inputs(model, z, action, None, 0.0, 0.0)
    torch.testing.assert_close(stepped.mu, teacher.mu)  # never its own: teacher forcing, step by step
    torch.testing.assert_close(stepped_state[0], state[0])
    own, _ = own_inputs(model, z, action, None, 0.0, 1.0)
    torch.testing.assert_close(own.mu[:, 0], teacher.mu[:, 0])  # the first input is always real
    assert not torch.allclose(own.mu[:, 1:], teacher.mu[:, 1:])  # then its own samples
    batch = {"z": torch.cat([z, torch.randn(3, 1, 4)], 1), "action": action, "reward": torch.zeros(3, 6)}
    batch.update(done=torch.zeros(3, 6), mask=torch.ones(3, 6))
    losses, _ = forward(model, batch, True, None, own=1.0)
    losses.total.backward()  # the loss reaches every weight through the real targets
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_dream_score_starts_each_dream_in_the_state_of_its_start(monkeypatch):
    from wm import evolve

    seen = []

    def spy(mdnrnn, controller, params, z0, *, state, **kwargs):
        seen.append((z0, state))
        return torch.zeros(len(z0))

    monkeypatch.setattr(evolve, "dream_returns", spy)
    z0 = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 4)  # start i: all i
    state = (z0.repeat(1, 2) + 0.5, -z0.repeat(1, 2))  # its (h, c): i + 0.5 and -i
    controller = Controller(4, 8)
    score = evolve.DreamScore(
        MDNRNN(z_dim=4, hidden=8, mixtures=2), controller, (z0, state), rollouts=3, steps=4, tau=1.0, seed=0
    )
    score(0, np.zeros((2, controller.size)))
    ((z, (h, c)),) = seen
    assert h.shape == c.shape == (6, 8)
    torch.testing.assert_close(h, z[:, :1].repeat(1, 8) + 0.5)
    torch.testing.assert_close(c, -z[:, :1].repeat(1, 8))


def test_dream_score_gives_every_candidate_the_same_dream_worlds(monkeypatch):
    from wm import evolve

    seen = []

    def spy(mdnrnn, controller, params, z0, *, masks, **kwargs):
        seen.append(masks)
        return torch.zeros(len(z0))

    monkeypatch.setattr(evolve, "dream_returns", spy)
    controller = Controller(4, 8)
    common = dict(rollouts=3, steps=4, tau=1.0, seed=0)
    model = MDNRNN(z_dim=4, hidden=8, mixtures=2)
    evolve.DreamScore(model, controller, (torch.randn(50, 4), None), **common)(
        0, np.zeros((2, controller.size))
    )
    score = evolve.DreamScore(model, controller, (torch.randn(50, 4), None), dropout=0.25, **common)
    score(0, np.zeros((2, controller.size)))
    score(1, np.zeros((2, controller.size)))
    none, masks, masks_next = seen
    assert none is None  # no dropout: M's own dream, as before
    assert masks.shape == (6, 8)
    worlds = masks.reshape(2, 3, 8)
    torch.testing.assert_close(worlds[0], worlds[1])  # both candidates dream in the same 3 worlds
    assert len({tuple(m.tolist()) for m in worlds[0]}) == 3
    assert not torch.equal(masks_next, masks)  # new worlds in the next generation


def latent_episodes(lengths, z_dim=4):
    from wm.episodes import Latents

    rng = np.random.default_rng(0)
    return [
        Latents(
            mu=rng.standard_normal((steps + 1, z_dim)).astype(np.float32),
            logvar=np.zeros((steps + 1, z_dim), np.float32),
            action=rng.standard_normal((steps, 3)).astype(np.float32),
            reward=np.zeros(steps, np.float32),
            done=np.zeros(steps, bool),
        )
        for steps in lengths
    ]


def test_states_at_are_the_lstm_state_after_reading_each_prefix():
    from wm.dream import states_at

    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim=4, hidden=8, mixtures=2).eval()
    episodes = latent_episodes((12, 9))
    steps = [0, 3, 9]
    h, c = states_at(mdnrnn, episodes, steps)
    assert h.shape == c.shape == (2, 3, 8)
    assert not h[:, 0].any() and not c[:, 0].any()  # nothing read yet: zeros
    for i, episode in enumerate(episodes):
        for j, step in enumerate(steps[1:], 1):
            z = torch.from_numpy(episode.mu[None, :step])
            _, (h_ref, c_ref) = mdnrnn(z, torch.from_numpy(episode.action[None, :step]))
            torch.testing.assert_close(h[i, j], h_ref[0, 0])
            torch.testing.assert_close(c[i, j], c_ref[0, 0])


def test_dream_starts_after_the_zoom_in_cold_or_warm(tmp_path, monkeypatch):
    from wm.dream import START_EVERY, dream_starts, states_at
    from wm.env import ZOOM_STEPS
    from wm.episodes import save_latents

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/latents").mkdir(parents=True)
    lengths = (ZOOM_STEPS + 2 * START_EVERY + 3, ZOOM_STEPS - 1, ZOOM_STEPS + START_EVERY)
    episodes = latent_episodes(lengths)
    for i, episode in enumerate(episodes):
        save_latents(tmp_path / f"data/latents/episode_{i:05d}.npz", episode)
    torch.manual_seed(0)
    mdnrnn = MDNRNN(z_dim=4, hidden=8, mixtures=2).eval()
    z0, state = dream_starts(mdnrnn, 4, warm=False)
    assert state is None
    starts = [(0, ZOOM_STEPS), (0, ZOOM_STEPS + START_EVERY), (0, ZOOM_STEPS + 2 * START_EVERY)]
    starts += [(2, ZOOM_STEPS), (2, ZOOM_STEPS + START_EVERY)]  # episode 1 ends in the zoom-in
    torch.testing.assert_close(z0, torch.from_numpy(np.stack([episodes[e].mu[s] for e, s in starts])))
    z0_warm, (h, c) = dream_starts(mdnrnn, 4, warm=True)
    torch.testing.assert_close(z0_warm, z0)
    for row, (e, step) in enumerate(starts):
        h_ref, c_ref = states_at(mdnrnn, [episodes[e]], [step])
        torch.testing.assert_close(h[row], h_ref[0, 0])
        torch.testing.assert_close(c[row], c_ref[0, 0])
    line, (h_line, _) = dream_starts(mdnrnn, 4, warm=True, along=False)  # the start lines only
    torch.testing.assert_close(line, z0[[0, 3]])
    torch.testing.assert_close(h_line, h[[0, 3]])
