"""``verifrl train RECIPE --dry-run``: load everything, run one rollout and its verification, print
the first batch, exit. Nothing is trained or written; use it to check a recipe (data columns, prompt
template, chat template, verifier, model) before spending a GPU on it.
"""

from __future__ import annotations

from verifrl.config import Config
from verifrl.groups import sample_groups, training_sampling
from verifrl.models import load_policy, seed_everything
from verifrl.prompts import prepare_task, prompt_for
from verifrl.scoring import build_verifiers


def dry_run(cfg: Config, log=print, show: int = 2) -> dict:
    """One rollout of the first batch (``rollout.num_prompts`` x ``group_size``), scored.

    Prints the first ``show`` prompts with their completions and rewards; returns the whole batch.
    """
    seed_everything(cfg.trainer.seed)
    verifiers = build_verifiers(cfg.reward.verifiers)
    try:
        policy, tokenizer = load_policy(cfg.model, log=log)
        task = prepare_task(cfg, tokenizer)
        rows = task.sampler.next_rows(cfg.rollout.num_prompts)
        prompts = [prompt_for(cfg, row, tokenizer) for row in rows]
        groups = sample_groups(policy, tokenizer, prompts, rows, verifiers, **training_sampling(cfg))
    finally:
        for named in verifiers:
            named.close()
    G, batch = cfg.rollout.group_size, groups.batch
    result = {
        "prompts": prompts,
        "answers": [str(row.get("answer", "")) for row in rows],
        "completions": batch.texts,
        "rewards": [float(r) for r in groups.rewards],
        "reasons": [str(r.info.get("reason", "")) for r in groups.scored.results[0]],
        "lengths": [int(n) for n in batch.lengths],
        "train_rows": len(task.sampler.dataset),
        "test_rows": len(task.test_rows),
        "skipped": dict(task.skipped),
    }
    log(f"dry run: {len(task.sampler.dataset)} train rows, {len(task.test_rows)} held-out rows, "
        f"skipped {task.skipped}; first batch {len(prompts)} prompts x {G} completions")
    for p, prompt in enumerate(prompts[:show]):
        log(f"--- prompt {p} (reference answer {result['answers'][p]!r}) ---\n{prompt}")
        for g in range(G):
            i = p * G + g
            log(f"  [{g}] reward {result['rewards'][i]:+.3f} ({result['reasons'][i]}), {result['lengths'][i]} tokens: "
                f"{batch.texts[i][:300]!r}")
    log(f"mean reward {sum(result['rewards']) / max(1, len(result['rewards'])):.3f}")
    return result
