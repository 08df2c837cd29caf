"""``mgnm recommend``, ``export``, ``cold-split`` and ``evaluate-cold``: using a trained run."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--users", help="Comma-separated user IDs (original IDs where the dataset has "
              "u_id_map.tsv, else indices), or @FILE with one per line.")
@click.option("--all-users", is_flag=True, help="Every user with a training interaction.")
@click.option("-k", "--k", "k", type=int, default=10, show_default=True)
@click.option("--output", "-o", type=click.Path(), help="Write the TSV (header row first) to "
              "this file (streamed, atomic) instead of printing it.")
@click.option("--include-train", is_flag=True, help="Do not exclude the users' training items.")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
def recommend(run_dir, users, all_users, k, output, include_train, data) -> None:
    """Top-K recommendations of a run's best model (tab-separated: user, rank, item, score,
    and the item's title where the dataset's i_id_map.tsv has one)."""
    from mgnm.predict.tasks import recommend_command

    recommend_command(run_dir, users, all_users, k, output, not include_train, data, click.echo)


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--output", "-o", type=click.Path(), required=True, help="Output .npz file.")
@click.option("--data", "-d", type=click.Path(), help="Dataset directory, if it moved.")
def export(run_dir, output, data) -> None:
    """Export a run's final user and item embeddings to .npz."""
    from mgnm import api

    path = api.export_embeddings(run_dir, output, data=data)
    click.echo(f"wrote {path}")


@click.command("cold-split")
@click.argument("data_dir", type=click.Path())
@click.option("--fraction", type=float, default=0.1, show_default=True,
              help="Fraction of the items that leave training.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), required=True, help="New dataset directory.")
def cold_split(data_dir, fraction, seed, out) -> None:
    """Make a cold-start dataset: a seeded fraction of items leaves training (half of them
    with all their interactions become validation, half test)."""
    from mgnm.predict.coldsplit import cold_split as make

    s = make(data_dir, out, fraction, seed)
    click.echo(f"wrote {s.out}: {s.cold_valid_items} cold validation items, "
               f"{s.cold_test_items} cold test items; rows train {s.train_rows} / "
               f"valid {s.valid_rows} / test {s.test_rows}")


@click.command("evaluate-cold")
@click.argument("run_dir", type=click.Path(), required=False)
@click.option("--data", "-d", type=click.Path(), help="Dataset directory (required with a "
              "reference scorer; else only if the run's data moved).")
@click.option("--reference", type=click.Choice(["content-knn", "popularity"]),
              help="Evaluate a data-only reference scorer on --data instead of a run.")
@click.option("--content-knn", is_flag=True, help="Same as --reference content-knn.")
@click.option("--catalogue", type=click.Choice(["all", "cold"]), default="all",
              show_default=True, help="Rank among every item (trained and cold, training "
              "items masked), or among the split's cold items only.")
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option("--weights", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="The best validation epoch's weights, or the last "
              "epoch's (checkpoint.pt; see docs/serving.md).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate_cold(run_dir, data, reference, content_knn, catalogue, split, weights,
                  as_json) -> None:
    """Rank a cold-start split's cold items for each user who has one (Recall/NDCG@K), among
    the whole catalogue or among the cold items only."""
    from mgnm.predict.coldeval import evaluate_cold as run_eval

    if content_knn:
        if reference not in (None, "content-knn"):
            raise click.UsageError("give either --content-knn or --reference, not both")
        reference = "content-knn"
    if (reference is not None) == (run_dir is not None):
        raise click.UsageError("give a RUN_DIR, or --reference NAME with --data")
    res = run_eval(run_dir, data=data, split=split, weights=weights, catalogue=catalogue,
                   reference=reference or "content-knn")
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
    line = (f"{res['scorer']} on {split} ({catalogue} items): {res['cold_items']} cold items, "
            f"{res['users']} users  {metrics}")
    if catalogue == "all":
        line += (f"  cold share of top-20 {res['cold_share_of_top']['cold_share@20']:.4f} "
                 f"(of the catalogue {res['cold_share_of_catalogue']:.4f})")
    click.echo(line)


