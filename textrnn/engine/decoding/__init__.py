"""Decoding over any step function: the model stays outside, behind a `step_fn`.

- `sampling`: the step-function contract, `select_next` (penalty, banned ids,
  temperature, top-k, top-p), `sample` and `greedy`;
- `beam`: `beam_search` for one source, `beam_search_batch` for many at once.
"""
