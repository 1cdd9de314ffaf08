"""Per-condition evaluation of a conditional generator: every metric within each group of one covariate
(tf3dstylegan.metrics.groups), and the covariate effect check (tf3dstylegan.metrics.effects);
`compute_metrics` is runner.evaluate with both added.

A group's real volumes are the records whose labels fall in it; its generated volumes are made from the
same latents as the overall ones (the same seed), with labels drawn from the group's real labels, so that
the generated covariates follow the group's distribution. A group evaluates min(num, count // 2) volumes
(count with reference=False): two disjoint real halves of that size for the real-vs-real row. Metrics that
need more volumes than that (groups.min_volumes) are listed under `skipped` with the volumes they need.
"""
from tf3dstylegan import conditions
from tf3dstylegan.metrics import effects, groups, labelled, runner


def resolve(G, data, by=None, effect=None, labels=None, label_encoding=None):
    """(LabelledData or None, Grouping or None, Effect or None) for a request, checked before any work
    (`labels` and `label_encoding`, default G's, describe an array `data`; a records folder has its own):
    ValueError for an unconditional G, data without named covariates, an unknown covariate (listing the
    names), or a covariate of the wrong kind. A conditional G alone gets the data's labels (for its
    generated volumes' labels)."""
    conditional = G is not None and labelled.label_size(G) > 0
    if (by is not None or effect is not None) and G is not None and not conditional:
        raise ValueError("the network is unconditional (label_size 0): per-condition evaluation needs a "
                         "conditional generator")
    if not (conditional or by is not None or effect is not None):
        return None, None, None
    data = labelled.LabelledData.open(data, labels, label_encoding or (conditions.label_encoding(G) if conditional
                                                                        else None))
    grouping = groups.parse_grouping(by) if isinstance(by, str) else by
    effect = effects.parse_effect(effect) if isinstance(effect, str) else effect
    if (grouping is not None or effect is not None) and data.source is None:
        raise ValueError("per-condition evaluation needs the real volumes as a records folder or an array")
    if grouping is not None:
        groups.check_grouping(grouping, data.require_names())
    if effect is not None:
        if G is None:
            raise ValueError("the covariate effect needs a conditional generator")
        effects.check_effect(effect, data.require_names())
    if conditional:
        labelled.generator_labels(G, data.labels[:1], data.encoding)  # fails now if G cannot take them
    return data, grouping, effect


def compute_metrics(G, data, metrics=runner.DEFAULT_METRICS, num=1000, batch_size=8, seed=0, reference=True,
                    extractors=None, truncation_psi=1.0, noise_mode="const", intervals=0, train_data=None,
                    memorisation_png=None, by=None, effect=None, effect_steps=effects.DEFAULT_STEPS, labels=None,
                    label_encoding=None, cache_reals=False, **extractor_kwargs):
    """runner.evaluate's results, plus with `by` ('sex', 'age:50,60,70' or a Grouping) the same metrics
    within each group under results['by'] (evaluate_groups), and with `effect` ('age' or an Effect) the
    covariate effect check under results['effect'] (effects.covariate_effect, `effect_steps` covariate values
    per latent; then `metrics` may be empty: the effect alone). Arguments as runner.evaluate."""
    metrics = tuple(metrics or ())
    if metrics or effect is None:
        metrics = runner.check_arguments(G, metrics, num, batch_size, reference, intervals)
    elif num < 2 or batch_size < 1:
        raise ValueError(f"need num >= 2 and batch_size >= 1, got {num} and {batch_size}")
    real, grouping, effect = resolve(G, data, by, effect, labels, label_encoding)
    extractors = extractors or runner.FeatureExtractors(metrics, **extractor_kwargs)
    results = runner.evaluate(
        G, data, metrics, num, batch_size, seed, reference, extractors, truncation_psi=truncation_psi,
        noise_mode=noise_mode, intervals=intervals, train_data=train_data, memorisation_png=memorisation_png,
        labels=labels, label_encoding=label_encoding, cache_reals=cache_reals,
        cache_dir=extractor_kwargs.get("cache_dir")) if metrics else {}
    if effect is not None:
        results["effect"] = effects.covariate_effect(G, real, effect, num, batch_size, seed, truncation_psi,
                                                     noise_mode, effect_steps)
    if grouping is not None:
        results["by"] = evaluate_groups(G, real, grouping, metrics, num, batch_size, reference, extractors,
                                        intervals, seed, train_data, truncation_psi, noise_mode, effect, effect_steps)
    return results


def evaluate_groups(G, data, grouping, metrics, num, batch_size, reference, extractors, intervals=0, seed=0,
                    train_data=None, truncation_psi=1.0, noise_mode="const", effect=None,
                    effect_steps=effects.DEFAULT_STEPS):
    """{group name: results} for LabelledData `data` split by `grouping`: `count` (real volumes in the group),
    `num` (volumes per evaluated set), the metrics as evaluate_streams gives them, `skipped` ({metric: volumes
    it needs} when the group has too few) and, with `effect`, the group's covariate effect (or why it is
    skipped)."""
    encoding = data.require_names()
    membership = groups.assign_groups(data.labels, grouping, encoding)
    results = {}
    for index, name in enumerate(groups.group_names(grouping, encoding)):
        def keep(labels, index=index):
            return groups.assign_groups(labels, grouping, encoding) == index

        rows = membership == index
        count = int(rows.sum())
        num_evaluated = groups.group_sample_count(count, num, reference)
        chosen = tuple(m for m in metrics if groups.min_volumes(m) <= num_evaluated)
        result = {"count": count, "num": num_evaluated}
        if chosen:
            fakes = None if G is None else runner.sampled_volumes(
                G, num_evaluated, batch_size, seed, truncation_psi, noise_mode,
                labels=labelled.generator_labels(G, data.labels[rows], data.encoding))
            result.update(runner.evaluate_streams(fakes, data.volumes(batch_size, keep), chosen, num_evaluated,
                                                  batch_size, reference, extractors, intervals, seed, train_data))
        skipped = {m: groups.min_volumes(m) for m in metrics if m not in chosen}
        if skipped:
            result["skipped"] = skipped
        if effect is not None:
            result["effect"] = _group_effect(G, data, effect, keep, num, batch_size, seed, truncation_psi,
                                             noise_mode, effect_steps)
        results[name] = result
    return results


def _group_effect(G, data, effect, keep, num, batch_size, seed, truncation_psi, noise_mode, steps):
    try:
        return effects.covariate_effect(G, data, effect, num, batch_size, seed, truncation_psi, noise_mode, steps,
                                        keep)
    except ValueError as err:  # too few volumes or a single covariate value in this group
        return {"covariate": effect.covariate, "measure": effect.measure, "skipped": str(err)}

