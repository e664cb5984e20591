"""``models``: list, download, import, verify and remove the models of the catalog and the cache.

Examples::

    python -m TextSegmentLib models list
    python -m TextSegmentLib models download ct-organs-v1.0.0
    python -m TextSegmentLib models import /media/usb/ct-organs-v1.0.0.zip
    python -m TextSegmentLib models verify
    python -m TextSegmentLib models remove ct-organs-v1.0.0
    python -m TextSegmentLib models publish exports/ct-organs --url https://example.org/ct-organs-v1.0.0.zip
"""

import argparse
import shutil
import sys
from typing import Callable, Optional, Tuple

from .main import UsageError


def _retries(text: str) -> int:
    """``--retries``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value}")
    return value


def _seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list, download, import, verify or remove models",
        description="Manage the model cache (TEXTSEGMENT_HOME; default ~/.cache/TextSegment/models).",
    )
    p.add_argument(
        "--catalog",
        help="catalog file (default: TEXTSEGMENT_CATALOG, else TextSegmentLib/resources/models.json)",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="show the catalog's models: id, installed, size, default")
    d = actions.add_parser("download", help="download and verify a model (id or name; default: the default model)")
    d.add_argument("id", nargs="?", default="default", help="model id (name-v1.2.3) or name")
    d.add_argument("--force", action="store_true", help="download again even if a verified copy is installed")
    d.add_argument("--retries", type=_retries, default=4, help="retries per URL after a network failure (default 4)")
    d.add_argument("--timeout", type=_seconds, default=60.0, help="seconds without data before a try fails")
    i = actions.add_parser("import", help="install a model from a local archive, folder or file:// URL (offline)")
    i.add_argument("path", help=".zip / .tar.gz archive, bundle folder, or file:// URL")
    i.add_argument("--id", dest="model_id", help="catalog id to check the file against, or the id of a custom model")
    v = actions.add_parser("verify", help="check installed models (all when no id is given); no network")
    v.add_argument("id", nargs="?", help="model id")
    r = actions.add_parser("remove", help="delete an installed model")
    r.add_argument("id", help="model id")
    pub = actions.add_parser("publish", help="pack a bundle and add its entry to the catalog (for maintainers)")
    pub.add_argument("path", help="bundle folder or .zip / .tar.gz archive")
    pub.add_argument("--url", action="append", default=[], help="where the archive will be served (repeatable)")
    pub.add_argument(
        "--embedded",
        action="store_true",
        help="list a bundle folder beside the catalog (TextSegmentLib/resources/models/<id>) as embedded",
    )
    pub.add_argument("--out", default=".", help="folder for the packed archive (default: current folder)")
    pub.add_argument("--modality", action="append", help="CT, MR, ... (default: from the card, else CT and MR)")
    pub.add_argument("--set-default", action="store_true", help="make this model's name the catalog default")
    pub.add_argument(
        "--only-embedded",
        action="store_true",
        help="with --embedded: this becomes the one embedded model; the others leave the catalog (or stay as "
        "downloads when they have URLs) and their folders are deleted",
    )
    pub.add_argument("--dry-run", action="store_true", help="print the entry, change no file")
    return p


def _size(n: Optional[int]) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def progress_bar(label: str) -> Tuple[Callable[[int, Optional[int]], None], Callable[[], None]]:
    """A tqdm progress callback for downloads (bytes done, total or None) and a function that closes the bar."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)

    def update(done: int, total: Optional[int]) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def _list(catalog) -> int:
    from ..catalog import cache_dir, list_models

    rows = list_models(catalog)
    if not rows:
        print(f"the catalog {catalog.path} lists no models, and none is installed in {cache_dir()}")
        return 0
    width = max(len(r.id) for r in rows)
    print(f"{'ID':<{width}}  {'INSTALLED':<9}  {'SIZE':>9}  NOTE")
    for r in rows:
        state = "embedded" if r.embedded and r.installed else ("yes" if r.installed else "no")
        state = "BROKEN" if r.broken else state
        notes = [
            n for n, on in (("default", r.default), ("deprecated", r.deprecated), ("custom", not r.in_catalog)) if on
        ]
        print(f"{r.id:<{width}}  {state:<9}  {_size(r.size):>9}  {', '.join(notes)}".rstrip())
    for r in rows:
        if r.broken:
            print(f"{r.id} is broken: {r.broken}; remove it (models remove {r.id}) and install it again")
    print(f"cache: {cache_dir()}")
    return 0


def _publish(args: argparse.Namespace, catalog) -> int:
    import json
    from pathlib import Path

    from ..catalog.catalog import id_from_card
    from ..catalog.install import check_folder
    from ..catalog.publish import add_to_catalog, make_entry, pack_bundle

    source = Path(args.path)
    if args.only_embedded and not args.embedded:  # before anything is packed or written
        raise UsageError("--only-embedded goes with --embedded")
    if args.embedded:
        if not source.is_dir():
            raise UsageError(
                "--embedded needs a bundle folder beside the catalog (TextSegmentLib/resources/models/<id>)"
            )
        try:
            rel = source.resolve().relative_to(Path(catalog.path).resolve().parent).as_posix()
        except ValueError as exc:
            raise UsageError(f"{source} is not inside {Path(catalog.path).parent}; copy it there first") from exc
        entry = make_entry(source, embedded=rel, modalities=args.modality)
    else:
        if not args.url:
            raise UsageError("give the URL(s) the archive will be served from with --url")
        if source.is_dir():
            card = check_folder(source)
            source = pack_bundle(source, Path(args.out) / f"{id_from_card(card)}.zip")
            print(f"packed {source}", file=sys.stderr)
        entry = make_entry(source, urls=args.url, modalities=args.modality)
    print(json.dumps(entry, indent=2))
    if not args.dry_run:
        name = entry["id"].rsplit("-v", 1)[0]
        retired = add_to_catalog(
            catalog.path, entry, default=name if args.set_default else None, only_embedded=args.only_embedded
        )
        print(f"added {entry['id']} to {catalog.path}", file=sys.stderr)
        for folder in retired:  # inside the catalog's folder (entries are checked when the catalog loads)
            if folder.is_dir() and folder.resolve().parent == (Path(catalog.path).resolve().parent / "models"):
                shutil.rmtree(folder)
                print(f"removed the embedded bundle {folder} (no longer in the catalog)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from ..catalog import (
        CatalogError,
        DownloadCancelled,
        DownloadError,
        DownloadOptions,
        check_model_id,
        import_model,
        installed_ids,
        load_catalog,
        remove_model,
        verify_model,
    )

    try:
        catalog = load_catalog(args.catalog)
        if args.action == "list":
            return _list(catalog)
        if args.action == "download":
            target = catalog.default_id() if args.id == "default" else args.id
            if target is None:
                raise UsageError(f"the catalog {catalog.path} names no default model; give a model id")
            if catalog.get(target) is None and catalog.newest(target) is None:
                known = ", ".join(e.id for e in catalog.entries) or "none"
                raise UsageError(f"'{args.id}' is not in the catalog (known: {known})")
            from ..catalog import download_model

            update, close = progress_bar(target)
            options = DownloadOptions(retries=args.retries, read_timeout=args.timeout)
            try:
                path = download_model(target, progress=update, catalog=catalog, options=options, force=args.force)
            finally:
                close()
            print(path)
            return 0
        if args.action == "import":
            print(import_model(args.path, model_id=args.model_id, catalog=catalog))
            return 0
        if args.action == "verify":
            if args.id is not None:
                check_model_id(args.id)  # an id that is not a name is bad input (exit 2), not a failed model
            ids = [args.id] if args.id is not None else installed_ids() + [e.id for e in catalog.entries if e.embedded]
            failed = 0
            for model_id in dict.fromkeys(ids):
                try:
                    verify_model(model_id, catalog=catalog)
                    print(f"{model_id}: ok")
                except CatalogError as exc:
                    failed += 1
                    print(f"{model_id}: FAILED: {exc}")
            if not ids:
                print("no model is installed")
            return 1 if failed else 0
        if args.action == "publish":
            return _publish(args, catalog)
        if args.action == "remove":
            if not remove_model(args.id, catalog=catalog):
                raise UsageError(f"model '{args.id}' is not installed")
            print(f"removed {args.id}")
            return 0
        raise UsageError(f"unknown action {args.action}")
    except DownloadCancelled:
        print("download cancelled; nothing was changed", file=sys.stderr)
        return 130
    except DownloadError as exc:
        if args.action == "import":  # an unsafe or unreadable local archive is bad input
            raise UsageError(str(exc)) from exc
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CatalogError as exc:
        raise UsageError(str(exc)) from exc
