"""Pairs (mnemo/Pairs-v0): the design measurements and the probes of a trained run in docs/multiagent_games.md.

    python -m benchmarks.pairs_players --games 1000                  # the baseline players against each other
    python -m benchmarks.pairs_players --games 1000 --pairs 5 --max-steps 200
    python -m benchmarks.pairs_players --run runs/pairs              # what a run's policy does (sampled)
    python -m benchmarks.pairs_players --imitate                     # can the default network fit the heuristic?
    python -m benchmarks.pairs_players --recall 64 none              # can the LSTM learn perfect memory's cards?

Players: random legal cards, the memoryless heuristic (``mnemo match``'s ``scripted``) and perfect memory, each a
baseline policy of ``envs/multiagent/pairs.py``; sides alternate, game g is seeded g (``play_game``). For each
pairing the first player's score rate (win 1, draw 1/2), the draws, and the flips a game lasts.

``--run``: the run's policy, sampled (seeded), in 150 games against random play (sides alternating): how often
it takes a pair the turn's view shows (at second flips: the face-up card's partner; at first flips: both cards
of a value) and the face-up card's partner that only a memory finds (turned in an earlier turn, not in view),
beside the chance of a random legal card (for the remembered partner, of a random legal card the view does not
show: what a player without memory can reach), and for a run with a recall head (``--recall-coef``, LSTM or GRU)
whether its state holds that partner (the recall head's card for the face-up value); then in 100 games against
itself: how often it turns a card never turned before, beside that chance, and how long its games last.

``--imitate``: the default policy network (memoryless: ``PolicyConfig(core="none")``) trained by cross-entropy
on the heuristic's cards (its side of 1500 games against random play, 80% to train, seed 0, Adam 1e-3,
batches of 256, 30 epochs); the greedy card's accuracy on the held-out flips where the heuristic takes what the
turn's view shows (at second flips the face-up card's partner, at first flips a pair), every 5 epochs.

``--recall SIZES ...``: the default LSTM policy network, with each ``--encoder-sizes`` given (``none``: no
encoder, the observation fed to the core), trained by cross-entropy through whole games (backpropagation
through every turn of a side, the sequences a turn-based run trains on) on the perfect-memory player's cards
(its side of ``--recall-games`` games against random play, seeds from 0; 1000 more from seed 10^6 held out;
seed 0, Adam 1e-3, batches of 64 games; ``--recall-products N`` adds the product readout, ``--recall-coef C`` the
recall loss with weight C, ``--recall-lookup D`` a lookup head, an experiment that is not a mnemo option: the logits
gain, for each card c, the dot product of D keys read linearly from the memory's output for card c with D query
numbers read linearly from the step's features). Every 5 epochs, the
greedy card's accuracy on the held-out second flips where the face-up card's partner was shown in an earlier
turn but is not in view (only a memory finds it), and where it is in view.
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.multiagent.pairs import (
    CARD_FEATURES,
    NONE,
    _decode,
    heuristic_policy,
    make_env,
    perfect_memory_policy,
    play_game,
    random_policy,
)

PLAYERS = {"random": random_policy, "heuristic": heuristic_policy, "memory": perfect_memory_policy}
PAIRINGS = (("memory", "random"), ("memory", "heuristic"), ("heuristic", "random"), ("memory", "memory"),
            ("random", "random"))


def score_rate(env, first: str, second: str, games: int) -> tuple[float, float, float, float]:
    """``first``'s score rate over ``games`` (sides alternating), the draws, the mean and 95th-percentile flips."""
    total = draws = 0.0
    flips = []
    for g in range(games):
        if g % 2 == 0:
            mine, theirs = play_game(env, (PLAYERS[first], PLAYERS[second]), g)
        else:
            theirs, mine = play_game(env, (PLAYERS[second], PLAYERS[first]), g)
        total += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
        draws += mine == theirs
        flips.append(env.game.t)
    return total / games, draws / games, float(np.mean(flips)), float(np.percentile(flips, 95))


def _against_random(env, seed: int, choose, rng: np.random.Generator) -> None:
    """One game seeded ``seed``: ``choose(agent, obs) -> card`` plays ``player_0`` in even games and ``player_1``
    in odd ones (reading ``env.game`` as it likes), a random legal card drawn from ``rng`` the other side."""
    obs, _ = env.reset(seed=seed)
    side = "player_0" if seed % 2 == 0 else "player_1"
    while env.agents:
        (agent,) = obs
        card = choose(agent, obs[agent]) if agent == side else random_policy(env, agent, obs[agent], rng)
        obs, *_ = env.step({agent: card})


def visible_pairs_taken(runner, env, games: int = 150) -> dict[str, tuple[int, float, float]]:
    """At the run's flips where the turn's view shows a pair it can take: (such flips, the fraction where it
    took it, a random legal card's chance), for second and first flips, and at its second flips where the
    face-up card's partner is not in view but was turned up in an earlier turn ("remembered": only a memory
    finds it; the chance there is a random legal card the view does not show, what a player without memory
    can reach); the run plays one side (alternating) against random play."""
    rng = np.random.default_rng(0)
    counts = {"second": [0, 0, 0.0], "first": [0, 0, 0.0], "remembered": [0, 0, 0.0]}
    readout = [0, 0]  # remembered flips the recall head was read at, and those where it named the partner

    def choose(agent: str, obs: dict[str, np.ndarray]) -> int:
        mask, shown, face_up = _decode(obs)
        if face_up != NONE:
            kind = "second"
            targets = {c for c, v in shown.items() if v == shown.get(face_up) and c != face_up and mask[c]}
            game = env.game
            if not targets:  # a partner turned up in an earlier turn only: a memory can find it
                kind = "remembered"
                targets = {int(c) for c in np.flatnonzero(mask & game.seen)
                           if game.values[c] == game.values[face_up]}
        else:
            kind = "first"
            by_value: dict[int, list[int]] = {}
            for c, v in shown.items():
                by_value.setdefault(v, []).append(c)
            targets = {c for cards in by_value.values() if len(cards) == 2 for c in cards}
        card = int(runner.act(obs, agent_ids=agent))
        if kind == "remembered" and targets and _reads_recall(runner):
            readout[0] += 1
            readout[1] += _recalled_partner(runner, agent, mask, shown, int(env.game.values[face_up])) in targets
        if targets:
            # The chance of a random legal card; for a remembered partner, of a random legal card the view
            # does not show (the best a player without memory can do there: the view's cards are not it).
            hidden = mask.copy()
            if kind == "remembered":
                hidden[list(shown)] = False
            counts[kind][0] += 1
            counts[kind][1] += card in targets
            counts[kind][2] += len(targets) / hidden.sum()
        return card

    for seed in range(games):
        runner.remove()
        _against_random(env, seed, choose, rng)
    result = {k: (n, took / max(n, 1), chance / max(n, 1)) for k, (n, took, chance) in counts.items()}
    if readout[0]:
        result["readout"] = (readout[0], readout[1] / readout[0], result["remembered"][2])
    return result


def _reads_recall(runner) -> bool:
    """Whether the run has a recall head (``--recall-coef``) and a core whose output is the top layer of its
    state (LSTM, GRU), so the head can be read from the runner's state after a step."""
    return runner.policy.has_recall_head and runner.config.policy.core in ("lstm", "gru")


def _recalled_partner(runner, agent: str, mask: np.ndarray, shown: dict[int, int], value: int) -> int:
    """The card the recall head, read from ``agent``'s state after its step, rates most likely to have shown
    ``value``, among the legal cards the view does not show: what the state knows, whatever the policy does."""
    import torch

    hidden = runner.get_state(agent)[0, -1]  # (W,): the top layer's h, the core's output
    with torch.no_grad():
        predicted = runner.policy.recall_head(hidden).numpy()
    cards = mask.size
    rows = predicted[:cards * (CARD_FEATURES + cards // 2)].reshape(cards, CARD_FEATURES + cards // 2)
    candidates = mask.copy()
    candidates[list(shown)] = False
    return int(np.where(candidates, rows[:, CARD_FEATURES + value], -np.inf).argmax())


def new_cards_in_self_play(runner, env, games: int = 100) -> tuple[float, float, float, float]:
    """The run against itself: the fraction of its flips (while an unturned card is left) that turn a card never
    turned before, a random legal card's chance of that, the mean flips a game, the fraction cut at the limit."""
    new = chance = n = 0.0
    flips, cut = [], []
    for seed in range(games):
        obs, _ = env.reset(seed=seed)
        runner.remove()
        while env.agents:
            (agent,) = obs
            legal = obs[agent]["action_mask"].astype(bool)
            unseen = legal & ~env.game.seen
            card = int(runner.act(obs[agent], agent_ids=agent))
            if unseen.any():
                new += bool(unseen[card])
                chance += unseen.sum() / legal.sum()
                n += 1
            obs, *_ = env.step({agent: card})
        flips.append(env.game.t)
        cut.append(bool(env.game.on_table.any()))
    return new / n, chance / n, float(np.mean(flips)), float(np.mean(cut))


def imitation_accuracy(epochs: int = 30, games: int = 1500) -> list[float]:
    """See the module docstring (``--imitate``); the accuracy after every 5th epoch."""
    import torch

    from agents.config import PolicyConfig
    from agents.model.policy import RecurrentActorCritic

    env = make_env()
    rng = np.random.default_rng(0)
    observations, masks, actions, partner_shown = [], [], [], []

    def choose(agent: str, obs: dict[str, np.ndarray]) -> int:
        card = heuristic_policy(env, agent, obs, rng)
        _, shown, face_up = _decode(obs)
        observations.append(obs["observation"])
        masks.append(obs["action_mask"])
        actions.append(card)
        values = list(shown.values())
        partner_shown.append(
            (face_up != NONE and any(v == shown.get(face_up) and c != face_up for c, v in shown.items()))
            or (face_up == NONE and len(set(values)) < len(values)))
        return card

    for seed in range(games):
        _against_random(env, seed, choose, rng)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(env.observation_space("player_0"), env.action_space("player_0"),
                                  PolicyConfig(core="none"))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    obs_t = {"observation": torch.as_tensor(np.array(observations)), "action_mask": torch.as_tensor(np.array(masks))}
    legal, target = obs_t["action_mask"].bool(), torch.as_tensor(actions)
    split = int(0.8 * len(actions))
    test = np.arange(split, len(actions))[np.array(partner_shown)[split:]]

    def loss_and_accuracy(rows: np.ndarray) -> tuple[torch.Tensor, float]:
        dist = policy.action_distribution(policy.encode({k: v[rows] for k, v in obs_t.items()}), legal[rows])
        return -dist.log_prob(target[rows]).mean(), float((dist.mode() == target[rows]).float().mean())

    accuracy = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(split)
        for start in range(0, split, 256):
            loss, _ = loss_and_accuracy(order[start:start + 256])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 4:
            with torch.no_grad():
                accuracy.append(loss_and_accuracy(test)[1])
    return accuracy


def _perfect_memory_games(env, seeds: range) -> tuple[dict, np.ndarray, np.ndarray]:
    """The perfect-memory player's side of one game against random play per seed (it moves first in even
    games): its observations as (T, B) leaves, its cards (T, B) (-1 past a game's end) and each flip's kind
    (T, B): 1 the partner in view, 2 the partner only remembered, 0 otherwise (-1 past the end)."""
    rng = np.random.default_rng(seeds.start)
    games: list[list[tuple[dict, int, int]]] = []

    def choose(agent: str, obs: dict[str, np.ndarray]) -> int:
        game = env.game
        card = perfect_memory_policy(env, agent, obs, rng)
        _, shown, face_up = _decode(obs)
        kind = 0
        if face_up != NONE and game.seen[card] and game.values[card] == game.values[face_up]:
            kind = 1 if card in shown else 2  # a known partner (not one turned up by luck)
        games[-1].append((obs, card, kind))
        return card

    for seed in seeds:
        games.append([])
        _against_random(env, seed, choose, rng)
    t_len, first = max(len(g) for g in games), games[0][0][0]
    leaves = {k: np.zeros((t_len, len(games), *np.shape(v)), np.float32) for k, v in first.items()}
    leaves["action_mask"][:] = 1.0  # padding: any card is legal there (its loss is masked out)
    cards = np.full((t_len, len(games)), -1)
    kinds = np.full((t_len, len(games)), -1)
    for b, turns in enumerate(games):
        for t, (observation, card, kind) in enumerate(turns):
            for k, v in observation.items():
                leaves[k][t, b] = v
            cards[t, b], kinds[t, b] = card, kind
    return leaves, cards, kinds


def recall_accuracy(encoder_sizes: tuple[int, ...], epochs: int = 20, games: int = 8000,
                    readout_products: int = 0, recall_coef: float = 0.0,
                    lookup_keys: int = 0) -> list[tuple[float, float]]:
    """See the module docstring (``--recall``); (remembered partner, partner in view) accuracy every 5 epochs."""
    import torch
    from torch import nn

    from agents.config import PolicyConfig
    from agents.model.policy import RecurrentActorCritic
    from agents.model.readout import memory_core

    env = make_env()
    train = _perfect_memory_games(env, range(games))
    test = _perfect_memory_games(env, range(10**6, 10**6 + 1000))
    torch.manual_seed(0)
    policy = RecurrentActorCritic(env.observation_space("player_0"), env.action_space("player_0"),
                                  PolicyConfig(encoder_sizes=encoder_sizes, readout_products=readout_products,
                                               recall_coef=recall_coef))
    parameters = list(policy.parameters())
    n_cards = policy.action_head.linear.out_features
    if lookup_keys:  # the lookup head (module docstring): per-card keys from the memory, a query from the features
        keys = nn.Linear(memory_core(policy.actor_core).out_features, n_cards * lookup_keys)
        query = nn.Linear(encoder_sizes[-1] if encoder_sizes else policy.preprocess.out_features, lookup_keys)
        parameters += [*keys.parameters(), *query.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def cards_scored(data, games_at: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-prob of the player's card, greedy card, the player's card), each (T, B) over ``games_at``, and the
        recall loss (0 without ``recall_coef``)."""
        leaves, cards, _ = data
        obs = {k: torch.as_tensor(v[:, games_at]) for k, v in leaves.items()}
        t_len, batch = len(cards), len(games_at)
        start = torch.zeros(t_len, batch)
        start[0] = 1.0
        features = policy.encode_sequence(obs, t_len, batch)
        hidden, _ = policy.actor_memory(features, policy.initial_state(batch), start)
        flat = hidden.reshape(t_len * batch, -1)
        raw = policy.action_head.linear(policy.actor_mlp(flat))
        if lookup_keys:  # logits += <key_c(h), query(x)> for each card c
            card_keys = keys(flat[:, :keys.in_features]).view(-1, n_cards, lookup_keys)  # h: the memory's output
            raw = raw + (card_keys * query(features.reshape(t_len * batch, -1)).unsqueeze(1)).sum(-1)
        dist = policy.action_head.distribution(raw, policy.legal_actions(obs).reshape(t_len * batch, -1))
        recall = torch.zeros(())
        if recall_coef:
            predicted = policy.recall_head(policy.recall_input(hidden))
            recall = (predicted - policy.recall_targets(obs, start)).pow(2).mean()
        target = torch.as_tensor(cards[:, games_at]).clamp(min=0)
        return (dist.log_prob(target.reshape(-1)).view(t_len, batch), dist.mode().view(t_len, batch), target,
                recall)

    accuracy = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(games)
        for start in range(0, games, 64):
            at = order[start:start + 64]
            log_prob, _, _, recall = cards_scored(train, at)
            played = torch.as_tensor(train[1][:, at] >= 0)
            loss = -log_prob[played].mean() + recall_coef * recall
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 4:
            with torch.no_grad():
                _, greedy, target, _ = cards_scored(test, np.arange(1000))
            kinds = torch.as_tensor(test[2])
            accuracy.append(tuple(float((greedy == target)[kinds == k].float().mean()) for k in (2, 1)))
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--run", default=None, help="A run directory of mnemo/Pairs-v0 to probe instead.")
    parser.add_argument("--imitate", action="store_true", help="Fit the default network to the heuristic instead.")
    parser.add_argument("--recall", nargs="+", metavar="SIZES", default=None,
                        help="Fit the LSTM network to perfect memory instead, once per --encoder-sizes given "
                             "('64', '256,256', 'none').")
    parser.add_argument("--recall-games", type=int, default=8000)
    parser.add_argument("--recall-epochs", type=int, default=20)
    parser.add_argument("--recall-products", type=int, default=0, help="The network's --readout-products.")
    parser.add_argument("--recall-coef", type=float, default=0.0, help="The network's --recall-coef: the recall "
                        "loss joins the fit, with this weight.")
    parser.add_argument("--recall-lookup", type=int, default=0, metavar="D",
                        help="Add the lookup head with keys of D numbers (not a mnemo option: an experiment).")
    args = parser.parse_args()
    if args.recall:
        for sizes in args.recall:
            encoder = () if sizes == "none" else tuple(int(n) for n in sizes.split(","))
            for k, (remembered, in_view) in enumerate(recall_accuracy(encoder, args.recall_epochs,
                                                                      args.recall_games, args.recall_products,
                                                                      args.recall_coef, args.recall_lookup)):
                print(f"encoder {sizes}, products {args.recall_products}, recall coef {args.recall_coef}, lookup "
                      f"{args.recall_lookup}, epoch {5 * (k + 1)}: partner remembered {remembered:.3f}, partner in "
                      f"view {in_view:.3f}", flush=True)
        return
    if args.imitate:
        for k, acc in enumerate(imitation_accuracy()):
            print(f"epoch {5 * (k + 1)}: accuracy at flips with a pair or partner in view {acc:.3f}")
        return
    if args.run is None:
        env = make_env(pairs=args.pairs, max_steps=args.max_steps)
        for first, second in PAIRINGS:
            score, draws, mean, p95 = score_rate(env, first, second, args.games)
            print(f"pairs {args.pairs}: {first} vs {second}: score {score:.3f}, draws {draws:.3f}, flips a game "
                  f"{mean:.1f} (95th percentile {p95:.0f})")
        return
    from agents.deploy.runner import PolicyRunner

    runner = PolicyRunner.load(args.run, deterministic=False, seed=0)
    env = make_env(**runner.config.env.env_kwargs)
    for kind, (n, took, chance) in visible_pairs_taken(runner, env).items():
        if kind == "remembered":
            print(f"second flips with the partner turned in an earlier turn, not in view: {n}, took it {took:.3f} "
                  f"(a random legal card the view does not show {chance:.3f})")
        elif kind == "readout":
            print(f"  the recall head read from the state names that partner at {took:.3f} of them (the legal card "
                  f"the view does not show whose predicted face is the face-up value)")
        else:
            print(f"{kind} flips with a pair in view: {n}, took it {took:.3f} (a random legal card {chance:.3f})")
    new, chance, mean, cut = new_cards_in_self_play(runner, env)
    print(f"self-play: turns a never-turned card {new:.3f} of the time (a random legal card {chance:.3f}); games "
          f"{mean:.1f} flips, {cut:.2f} of them cut at the time limit")


if __name__ == "__main__":
    main()
