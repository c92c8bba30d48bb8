"""The test scorer (one home for it): a VMDIFF_SCORER whose scores follow a script, so a search takes known branches.
Pure Python: used by the test-only node VMDiffTestForcedScorer inside a server and by the in-process tests."""


class ForcedScorer:
    """``scores``: a list of scores cycled over the calls, or a function of the call index (0, 1, …). Every image
    scored is one call; the other fields are fixed (n1 = n2 = (T − 0.15) / 0.3 = 0.5)."""

    def __init__(self, scores):
        self.script = scores if callable(scores) else (lambda k, s=tuple(scores): s[k % len(s)])
        self.calls = 0

    def score(self, images):
        out = []
        for _ in range(images.shape[0]):
            s = self.script(self.calls)
            self.calls += 1
            out.append({"score": s, "D1": 0.5, "D2": 0.4, "T1": 0.3, "T2": 0.3,
                        "n1": (0.3 - 0.15) / 0.3, "n2": (0.3 - 0.15) / 0.3})
        return out
