"""GAE against numbers worked on paper, and cutting rollouts into BPTT sequences."""

import numpy as np
import torch
from gymnasium import spaces

from agents.rollout.buffer import RolloutBuffer, compute_gae, gather_sequences, make_sequences


def test_gae_hand_worked_with_mid_rollout_truncation_and_termination():
    # gamma = lambda = 0.5 so every product is exact in binary floating point.
    # env 0: truncated after step 1 (bootstrap V(final obs) = 10); env 1: terminated after step 2.
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    values = torch.tensor([[0.5, 1.0], [1.0, 1.0], [1.5, 1.0], [2.0, 1.0]])
    terminated = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    truncated = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    truncation_values = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    last_value = torch.tensor([3.0, 2.0])
    adv, ret = compute_gae(rewards, values, terminated, truncated, truncation_values, last_value, 0.5, 0.5)
    # env 0 deltas: t3 = 4 + .5*3 - 2 = 3.5; t2 = 3 + .5*2 - 1.5 = 2.5;
    #   t1 (truncated) = 2 + .5*10 - 1 = 6; t0 = 1 + .5*1 - .5 = 1.
    #   A3 = 3.5, A2 = 2.5 + .25*3.5 = 3.375, A1 = 6 (boundary), A0 = 1 + .25*6 = 2.5.
    # env 1 deltas: t3 = 1 + .5*2 - 1 = 1; t2 (terminated) = 1 + 0 - 1 = 0; t1 = t0 = .5.
    #   A3 = 1, A2 = 0 (boundary), A1 = .5, A0 = .5 + .25*.5 = .625.
    expected_adv = torch.tensor([[2.5, 0.625], [6.0, 0.5], [3.375, 0.0], [3.5, 1.0]])
    torch.testing.assert_close(adv, expected_adv, atol=0, rtol=0)
    torch.testing.assert_close(ret, expected_adv + values, atol=0, rtol=0)


def test_gae_terminated_and_truncated_together_counts_as_termination():
    one = torch.ones(1, 1)
    adv, _ = compute_gae(one, torch.zeros(1, 1), one, one, torch.full((1, 1), 100.0), torch.zeros(1), 0.9, 0.9)
    assert adv.item() == 1.0


def test_gae_lambda_one_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.3], [0.2], [0.1]])
    zeros = torch.zeros(3, 1)
    _, ret = compute_gae(rewards, values, zeros, zeros, zeros, torch.tensor([2.0]), 0.9, 1.0)
    expected = torch.tensor([[1 + 0.9 + 0.81 + 0.729 * 2], [1 + 0.9 + 0.81 * 2], [1 + 0.9 * 2]])
    torch.testing.assert_close(ret, expected)


def _starts():
    starts = np.zeros((8, 2), dtype=bool)
    starts[0] = True
    starts[4, 0] = True
    return starts


def test_sequences_reset_mode_cut_at_bptt_len_and_episode_starts():
    seqs = make_sequences(_starts(), bptt_len=3, cut_at_episode_starts=True)
    # env 0: [0 1 2] [3] | [4 5 6] [7]; env 1: [0 1 2] [3 4 5] [6 7]
    assert seqs.num_sequences == 7
    assert seqs.mask.sum(0).tolist() == [3, 1, 3, 1, 3, 3, 2]
    assert seqs.start_time.tolist() == [0, 3, 4, 7, 0, 3, 6]
    assert seqs.start_env.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert seqs.time_index[:, 2].tolist() == [4, 5, 6]
    assert seqs.time_index[:, 3].tolist()[0] == 7 and seqs.mask[:, 3].tolist() == [1, 0, 0]


def test_sequences_carry_mode_ignore_episode_starts():
    seqs = make_sequences(_starts(), bptt_len=3, cut_at_episode_starts=False)
    assert seqs.mask.sum(0).tolist() == [3, 3, 2, 3, 3, 2]
    assert seqs.start_time.tolist() == [0, 3, 6, 0, 3, 6]


def test_sequences_cover_every_step_exactly_once():
    rng = np.random.default_rng(0)
    starts = rng.random((37, 5)) < 0.15
    for bptt in (1, 4, 37):
        for cut in (True, False):
            seqs = make_sequences(starts, bptt, cut)
            real = seqs.mask.bool()
            cells = set(zip(seqs.time_index[real].tolist(), seqs.env_index[real].tolist(), strict=True))
            assert len(cells) == 37 * 5 == int(real.sum())
            assert seqs.mask.shape[0] <= bptt
            # Real steps are consecutive in time from the start, padding only at the end.
            lengths = seqs.mask.sum(0).long()
            for m in range(seqs.num_sequences):
                assert seqs.mask[: lengths[m], m].all()
                expected = torch.arange(lengths[m]) + seqs.start_time[m]
                assert seqs.time_index[: lengths[m], m].tolist() == expected.tolist()
                if cut:  # no episode start after the first step of a sequence
                    inner = starts[seqs.time_index[1: lengths[m], m].numpy(), seqs.start_env[m].item()]
                    assert not inner.any()


def test_gather_sequences_takes_stored_start_states():
    buf = RolloutBuffer(8, 2, spaces.Box(-1, 1, (1,), np.float32), (), torch.int64, (2, 1, 4), torch.device("cpu"))
    buf.states = torch.arange(8 * 2 * 1 * 2 * 4, dtype=torch.float32).view(8, 2, 1, 2, 4)
    buf.obs = torch.arange(16, dtype=torch.float32).view(8, 2, 1)
    seqs = make_sequences(_starts(), bptt_len=3, cut_at_episode_starts=True)
    zeros = torch.zeros(8, 2)
    batch = gather_sequences(buf, seqs, zeros, zeros)
    for m in range(seqs.num_sequences):
        t, n = seqs.start_time[m].item(), seqs.start_env[m].item()
        torch.testing.assert_close(batch.start_states[:, :, m], buf.states[t, :, :, n])
        assert batch.obs[0, m, 0].item() == t * 2 + n
