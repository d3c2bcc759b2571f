"""Emulate NNI's RegularizedEvolution (same algorithm) vs best-of-N random on a trained supernet's scorer."""
import collections
import random
import statistics
import sys

sys.path.insert(0, "/work/main")
from supernet.scoring.candidates import CandidateScorer

state = sys.argv[1]; trials = int(sys.argv[2]); seeds = range(int(sys.argv[3]))
scorer = CandidateScorer.from_file(state); space = scorer.space
memo = {}
def score(c):
    k = tuple(sorted(space.canonical(c).items()))
    if k not in memo: memo[k] = scorer.score(dict(c))[scorer.main_metric]
    return memo[k]
def evolve(seed, P, S, pm, canon):
    rng = random.Random(seed); seen = set(); hist = []
    key = (lambda c: tuple(sorted(space.canonical(c).items()))) if canon else (lambda c: tuple(sorted(c.items())))
    def new(make):
        for _ in range(1000):
            c = make(); k = key(c)
            if k not in seen: seen.add(k); return c
    pop = collections.deque()
    while len(hist) < trials:
        if len(hist) < P: c = new(lambda: space.sample(rng))
        else:
            def mut():
                cand = rng.sample(list(pop), S); parent = max(cand, key=lambda x: x[1])[0]
                child = dict(parent)
                for l in child:
                    if rng.random() < pm: child[l] = space.sample(rng)[l]
                return child
            c = new(mut)
        y = score(c); hist.append(y); pop.append((c, y))
        if len(pop) > P: pop.popleft()
    return max(hist)
def rand(seed):
    rng = random.Random(seed + 1); return max(score(space.sample(rng)) for _ in range(trials))
configs = [(16, 4, 0.1, True), (12, 3, 0.1, True), (24, 6, 0.1, True)]
res = collections.defaultdict(list)
for s in seeds:
    r = rand(s); res["random"].append(r)
    for cfg in configs:
        res[str(cfg)].append(evolve(s, *cfg))
    print(s, {k: v[-1] for k, v in res.items()}, len(memo), flush=True)
for k, v in res.items():
    wins = sum(e > r for e, r in zip(v, res["random"])); ties = sum(e == r for e, r in zip(v, res["random"]))
    print(k, f"mean best {statistics.mean(v):.4f}", f"wins {wins} ties {ties} of {len(v)}")
