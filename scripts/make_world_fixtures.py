#!/usr/bin/env python3
"""Writes the reference fixtures of the Worlds text games (Tests/WorldsTests/Fixtures/*.json).

Frozen Lake comes from Gymnasium's FrozenLake-v1, Minesweeper and Sokoban from TextArena. Run it in a
virtual environment with the pinned versions (the README's "Worlds: text games" section):

    python3 -m venv --system-site-packages .venv-worlds
    .venv-worlds/bin/pip install gymnasium==1.4.0 textarena==0.7.4
    .venv-worlds/bin/python scripts/make_world_fixtures.py

The output is deterministic for those versions: every environment is seeded and every scripted action
sequence is drawn from its own `random.Random(seed)`, never from the global generator that TextArena
seeds and draws mines and rooms from.
"""
import json
import os
import random
import sys
from collections import deque

import numpy as np
import gymnasium as gym
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv, MAPS, generate_random_map
import textarena as ta
from textarena.envs.Minesweeper.env import MinesweeperEnv
from textarena.envs.Sokoban.env import SokobanEnv

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "WorldsTests", "Fixtures")


def versions():
    return {"gymnasium": gym.__version__, "textarena": getattr(ta, "__version__", "0.7.4"), "numpy": np.__version__,
            "python": sys.version.split()[0]}


# ---------------------------------------------------------------- Frozen Lake (Gymnasium FrozenLake-v1)

def table(env):
    P = env.unwrapped.P
    return [[[[float(p), int(s), float(r), bool(t)] for (p, s, r, t) in P[s0][a]] for a in range(4)] for s0 in range(len(P))]


def value_iteration_numpy(P, n_states, horizon=None, tol=1e-15):
    """The optimal success value from state 0, computed independently of the Swift code.

    With a horizon: backward induction over that many steps (the TimeLimit's episode). Without one:
    undiscounted value iteration until no value moves by `tol`, and, where the greedy policy is proper
    (it ends every episode with probability 1), the exact value of that policy from a linear solve
    (I - T_pi) v = R_pi (None where that policy loops). numpy's argmax happens to give a proper policy on
    both maps; the Swift solver breaks ties on purpose (by a discounted value) and must reach the same value."""
    T = np.zeros((n_states, 4, n_states))
    R = np.zeros((n_states, 4))
    for s in range(n_states):
        for a in range(4):
            for p, s2, r, t in P[s][a]:
                R[s, a] += p * r
                if not t:
                    T[s, a, s2] += p
    if horizon is not None:
        v = np.zeros(n_states)
        for _ in range(horizon):
            v = (R + T @ v).max(axis=1)
        return float(v[0]), None
    v = np.zeros(n_states)
    for _ in range(10_000_000):
        v2 = (R + T @ v).max(axis=1)
        done = np.max(np.abs(v2 - v)) < tol
        v = v2
        if done:
            break
    q = R + T @ v
    policy = [int(np.argmax(q[s])) for s in range(n_states)]
    Tpi = np.array([T[s, policy[s]] for s in range(n_states)])
    Rpi = np.array([R[s, policy[s]] for s in range(n_states)])
    # Proper: from every state, the policy's chain leaves the non-terminal states (spectral radius < 1).
    if max(abs(np.linalg.eigvals(Tpi))) < 1 - 1e-9:
        exact = float(np.linalg.solve(np.eye(n_states) - Tpi, Rpi)[0])
    else:
        exact = None
    return float(v[0]), exact


def frozen_lake():
    out = {"versions": versions(), "tables": [], "randomMaps": [], "trajectories": [], "renders": [], "solutions": [],
           "numpyRandom": []}
    # The stream Gymnasium seeds: numpy.random.default_rng(seed) = Generator(PCG64(SeedSequence(seed))).
    for seed in [0, 1, 42, 12345, 2**32 + 7, 2**64 - 1]:
        rng, _ = gym.utils.seeding.np_random(seed)
        out["numpyRandom"].append({"seed": str(seed), "values": [float(x) for x in rng.random(6)]})
    cases = [("4x4", MAPS["4x4"]), ("8x8", MAPS["8x8"])]
    random_maps = [(4, 0.8, 0), (5, 0.7, 1), (6, 0.6, 3), (8, 0.8, 42), (8, 0.5, 7), (10, 0.9, 123), (3, 0.3, 5)]
    for size, p, seed in random_maps:
        desc = generate_random_map(size=size, p=p, seed=seed)
        out["randomMaps"].append({"size": size, "p": p, "seed": seed, "desc": desc})
        cases.append((f"random-{size}-{p}-{seed}", desc))
    for name, desc in cases:
        for slippery in (True, False):
            env = FrozenLakeEnv(desc=desc, is_slippery=slippery)
            out["tables"].append({"name": name, "desc": list(desc), "isSlippery": slippery, "successRate": 1.0 / 3.0,
                                  "rewardSchedule": [1.0, 0.0, 0.0], "P": table(env)})
    for name, desc, rate, schedule in [("4x4", MAPS["4x4"], 0.75, (2.0, -1.0, -0.1)),
                                        ("8x8", MAPS["8x8"], 0.5, (1.0, -1.0, 0.0))]:
        env = FrozenLakeEnv(desc=desc, is_slippery=True, success_rate=rate, reward_schedule=schedule)
        out["tables"].append({"name": name, "desc": list(desc), "isSlippery": True, "successRate": rate,
                              "rewardSchedule": list(schedule), "P": table(env)})

    # Trajectories through gym.make (TimeLimit included): reset(seed) seeds NumPy's PCG64 stream, which
    # draws the start state and every slip.
    for env_id, seeds, slippery in [("FrozenLake-v1", [0, 1, 2, 3, 42], True), ("FrozenLake8x8-v1", [0, 5, 9], True),
                                    ("FrozenLake-v1", [0], False), ("FrozenLake8x8-v1", [1], False)]:
        for seed in seeds:
            env = gym.make(env_id, is_slippery=slippery)
            obs, info = env.reset(seed=seed)
            chooser = random.Random(10_000 + seed)
            steps = []
            while True:
                # Unslippery runs walk into the top-left walls until the time limit truncates them.
                a = chooser.randrange(4) if slippery else chooser.choice([0, 3])
                obs, r, term, trunc, info = env.step(a)
                steps.append({"action": a, "state": int(obs), "reward": float(r), "terminated": bool(term),
                              "truncated": bool(trunc), "prob": float(info["prob"])})
                if term or trunc:
                    break
            # A second episode without a new seed continues the same stream.
            obs2, _ = env.reset()
            a2 = [chooser.randrange(4) for _ in range(5)]
            steps2 = []
            for a in a2:
                o, r, term, trunc, info = env.step(a)
                steps2.append({"action": a, "state": int(o), "reward": float(r), "terminated": bool(term),
                               "truncated": bool(trunc), "prob": float(info["prob"])})
                if term or trunc:
                    break
            out["trajectories"].append({"envID": env_id, "isSlippery": slippery, "seed": seed, "start": int(obs2),
                                        "maxEpisodeSteps": env.spec.max_episode_steps, "steps": steps,
                                        "continued": steps2})
    env = gym.make("FrozenLake-v1", render_mode="ansi", is_slippery=False)
    env.reset(seed=0)
    frames = [env.render()]
    for a in [2, 1, 1]:
        env.step(a)
        frames.append(env.render())
    out["renders"].append({"envID": "FrozenLake-v1", "actions": [2, 1, 1], "frames": frames})

    for name, desc, horizon in [("4x4", MAPS["4x4"], None), ("4x4", MAPS["4x4"], 100),
                                ("8x8", MAPS["8x8"], None), ("8x8", MAPS["8x8"], 200)]:
        env = FrozenLakeEnv(desc=desc, is_slippery=True)
        value, exact = value_iteration_numpy(env.P, len(env.P), horizon)
        out["solutions"].append({"name": name, "desc": list(desc), "horizon": horizon, "successProbability": value,
                                 "linearSolve": exact})
    return out


# ---------------------------------------------------------------- Minesweeper (TextArena Minesweeper-v0)

def ms_record(env, action):
    done, info = env.step(action)
    st = env.state
    return {"action": action, "board": env._render_board(), "done": bool(done),
            "reward": None if st.rewards is None else float(st.rewards[0]),
            "errorCount": int(st.error_count), "turn": int(st.turn),
            "reason": st.game_info[0].get("reason") if done else None}


def ms_mines(env):
    return [[r, c] for r in range(env.rows) for c in range(env.cols) if env.grid[r][c] == -1]


def minesweeper():
    out = {"versions": versions(), "episodes": []}
    presets = [("Minesweeper-v0-small", 5, 5, 5), ("Minesweeper-v0", 8, 8, 10), ("Minesweeper-v0-medium", 10, 10, 20),
               ("Minesweeper-v0-hard", 12, 12, 30)]

    def episode(kind, env_id, rows, cols, mines, seed, max_turns=100):
        env = MinesweeperEnv(rows=rows, cols=cols, num_mines=mines, max_turns=max_turns)
        env.reset(num_players=1, seed=seed)
        chooser = random.Random(20_000 + seed)
        first = (chooser.randrange(rows), chooser.randrange(cols))
        steps = [ms_record(env, f"I reveal [{first[0]} {first[1]}]")]
        layout = ms_mines(env)
        mine_set = {tuple(m) for m in layout}
        while not steps[-1]["done"] and len(steps) < 80:
            hidden = [(r, c) for r in range(rows) for c in range(cols) if not env.revealed[r][c]]
            safe_hidden = [rc for rc in hidden if rc not in mine_set]
            roll = chooser.random()
            if kind == "win" or kind == "limit":
                r, c = safe_hidden[0]
                act = f"[{r} {c}]"
            elif kind == "double-mine":
                r, c = next(iter(sorted(mine_set)))
                act = f"[{r} {c}]"
            else:  # random play with malformed, out-of-range and repeated moves mixed in
                if roll < 0.08:
                    act = chooser.choice(["reveal the corner", "[3,2]", "[a b]", "[]"])
                elif roll < 0.14:
                    act = f"[{rows + 3} 0]"
                elif roll < 0.22:
                    revealed = [(r, c) for r in range(rows) for c in range(cols) if env.revealed[r][c]]
                    r, c = chooser.choice(revealed)
                    act = f"[{r} {c}]"
                elif roll < 0.30 and hidden:
                    r, c = chooser.choice(hidden)
                    act = f"[{r} {c}]"
                else:
                    r, c = chooser.choice(safe_hidden)
                    act = f"Let me think... [{r} {c}] looks safe. [0 0]"
            steps.append(ms_record(env, act))
        out["episodes"].append({"kind": kind, "envID": env_id, "rows": rows, "cols": cols, "mines": mines,
                                "maxTurns": max_turns, "seed": seed, "layout": layout, "steps": steps})

    for env_id, rows, cols, mines in presets:
        for seed in (0, 1):
            episode("random", env_id, rows, cols, mines, seed)
        episode("win", env_id, rows, cols, mines, 7)
    episode("double-mine", "Minesweeper-v0", 8, 8, 10, 3)
    episode("limit", "Minesweeper-v0-hard", 12, 12, 30, 4, max_turns=5)
    return out


# ---------------------------------------------------------------- Sokoban (TextArena Sokoban-v0)

def xsb(room_fixed, room_state):
    rows = []
    for r in range(room_fixed.shape[0]):
        line = ""
        for c in range(room_fixed.shape[1]):
            f, s = int(room_fixed[r, c]), int(room_state[r, c])
            if f == 0:
                line += "#"
            elif s == 5:
                line += "+" if f == 2 else "@"
            elif s in (3, 4):
                line += "*" if f == 2 else "$"
            else:
                line += "." if f == 2 else " "
        rows.append(line)
    return rows


def bfs_solve(fixed, state):
    """A shortest move plan by breadth-first search (rooms are small)."""
    walls = {(r, c) for r in range(fixed.shape[0]) for c in range(fixed.shape[1]) if fixed[r, c] == 0}
    goals = frozenset((r, c) for r in range(fixed.shape[0]) for c in range(fixed.shape[1]) if fixed[r, c] == 2)
    player = tuple(int(x) for x in np.argwhere(state == 5)[0])
    boxes = frozenset((int(r), int(c)) for r, c in np.argwhere((state == 3) | (state == 4)))
    moves = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
    start = (player, boxes)
    prev = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        p, bx = cur
        if bx == goals:
            plan = []
            while prev[cur] is not None:
                cur, m = prev[cur]
                plan.append(m)
            return plan[::-1]
        for name, (dr, dc) in moves.items():
            q = (p[0] + dr, p[1] + dc)
            if q in walls:
                continue
            nb = bx
            if q in bx:
                b2 = (q[0] + dr, q[1] + dc)
                if b2 in walls or b2 in bx:
                    continue
                nb = (bx - {q}) | {b2}
            nxt = (q, nb)
            if nxt not in prev:
                prev[nxt] = (cur, name)
                queue.append(nxt)
    return None


def sk_record(env, action):
    done, info = env.step(action)
    st = env.state
    return {"action": action, "board": env.create_board_str(env.room_state), "done": bool(done),
            "reward": None if st.rewards is None else float(st.rewards[0]),
            "errorCount": int(st.error_count), "turn": int(st.turn),
            "reason": st.game_info[0].get("reason") if done else None}


def sokoban():
    out = {"versions": versions(), "episodes": []}
    texts = ["[up]", "[down]", "[left]", "[right]", "[w]", "[a]", "[s]", "[d]", "[UP]", "I push [Left] now",
             "[D]", "go up", "[north]"]

    def episode(kind, env_id, dim, boxes, max_turns, seed):
        env = SokobanEnv(dim_room=dim, max_turns=max_turns, num_boxes=boxes)
        env.reset(num_players=1, seed=seed)
        level = xsb(env.room_fixed, env.room_state)
        initial = env.create_board_str(env.room_state)
        chooser = random.Random(30_000 + seed)
        if kind == "solve" or kind == "limit":
            plan = bfs_solve(env.room_fixed, env.room_state)
            actions = [f"[{m}]" for m in plan]
        elif kind == "double-invalid":
            actions = ["[up]", "no idea", "[jump]"]
        else:
            actions = [chooser.choice(texts) for _ in range(40)]
        steps = []
        for a in actions:
            steps.append(sk_record(env, a))
            if steps[-1]["done"]:
                break
        out["episodes"].append({"kind": kind, "envID": env_id, "dim": list(dim), "boxes": boxes,
                                "maxTurns": max_turns, "seed": seed, "level": level, "initialBoard": initial,
                                "steps": steps})

    for seed in (0, 1, 2):
        episode("random", "Sokoban-v0", (6, 6), 3, 30, seed)
    for seed in (3, 4):
        episode("solve", "Sokoban-v0", (6, 6), 3, 30, seed)
    episode("random", "Sokoban-v0-medium", (8, 8), 5, 50, 5)
    episode("limit", "Sokoban-v0", (6, 6), 3, 2, 6)
    episode("double-invalid", "Sokoban-v0", (6, 6), 3, 30, 8)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, make in [("frozen_lake.json", frozen_lake), ("minesweeper.json", minesweeper), ("sokoban.json", sokoban)]:
        data = make()
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(data, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
