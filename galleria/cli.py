"""Command line: parse arguments, run one command, map errors to exit codes.

Exit codes: 0 success, 1 build failure, 2 bad config or usage (MkDocs habits).
"""
from __future__ import annotations

import argparse
import os
import sys

from galleria import __version__
from galleria.errors import GalleriaError, UsageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galleria", description="Static activation galleries for PyTorch models.")
    parser.add_argument("--version", action="version", version=f"galleria {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build the gallery into the output folder")
    build.add_argument("-f", "--config-file", default="site.yaml", metavar="FILE", help="default: site.yaml")
    build.add_argument("-d", "--site-dir", metavar="DIR", help="output folder (default: site.output_dir)")
    build.add_argument("--clean", action="store_true",
                       help="discard cached activations and images first: recompute everything")
    build.add_argument("--strict", action="store_true", help="fail on warnings (e.g. skipped inputs)")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bars or warnings")
    build.add_argument("-u", "--site-url", metavar="URL", help="the public url, replacing site.url (e.g. from CI)")

    serve = commands.add_parser("serve", help="build, serve on loopback and rebuild on edits (live preview)")
    serve.add_argument("-f", "--config-file", default="site.yaml", metavar="FILE", help="default: site.yaml")
    serve.add_argument("-a", "--dev-addr", default="127.0.0.1:8000", metavar="HOST:PORT",
                       help="address to serve on (default: 127.0.0.1:8000)")
    serve.add_argument("-q", "--quiet", action="store_true", help="no progress bars or warnings")
    serve.add_argument("-u", "--site-url", metavar="URL", help="the public url, replacing site.url (e.g. from CI)")

    layers = commands.add_parser("layers", help="print a model's layers with output shapes")
    layers.add_argument("model", nargs="?", help="model id from site.yaml (optional with one model)")
    layers.add_argument("-f", "--config-file", default="site.yaml", metavar="FILE", help="default: site.yaml")

    new = commands.add_parser("new", help="create a starter gallery in a new folder")
    new.add_argument("directory", metavar="DIR", help="the folder to create (it may exist if empty)")

    deploy = commands.add_parser("gh-deploy", help="build, then push the site to the branch GitHub Pages serves")
    deploy.add_argument("-f", "--config-file", default="site.yaml", metavar="FILE", help="default: site.yaml")
    deploy.add_argument("-r", "--remote", default="origin", help="git remote to push to (default: origin)")
    deploy.add_argument("-b", "--remote-branch", default="gh-pages", metavar="BRANCH",
                        help="branch to commit the site on (default: gh-pages)")
    deploy.add_argument("-m", "--message", help="commit message (default: 'Deployed SHA with galleria VERSION')")
    deploy.add_argument("--no-build", action="store_true", help="deploy the output folder as it is")
    deploy.add_argument("--force", action="store_true", help="force the push, replacing the remote branch")
    deploy.add_argument("-q", "--quiet", action="store_true", help="no progress bars or warnings")
    deploy.add_argument("-u", "--site-url", metavar="URL", help="the public url, replacing site.url (e.g. from CI)")
    schema = commands.add_parser("schema", help="print site.yaml's JSON Schema (for editors and validators)")
    schema.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead")

    export = commands.add_parser("export", help="write every unit's record, one file per layer (JSON Lines or Parquet)")
    export.add_argument("-f", "--config-file", default="site.yaml", metavar="FILE", help="default: site.yaml")
    export.add_argument("--format", default="jsonl", choices=("jsonl", "parquet"),
                        help="jsonl (default) or parquet (needs pyarrow)")
    export.add_argument("-o", "--output", metavar="DIR", help="folder to write (default: export/ beside site.yaml)")
    export.add_argument("--no-build", action="store_true", help="export the site as it was last built")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bars or warnings")
    return parser


def main(argv: list[str] | None = None) -> int:
    code = _command(argv)
    from galleria.distributed import joined

    if joined():  # a torchrun rank: once gloo has run, winding the interpreter down can abort the
        sys.stdout.flush()  # process ("terminate called without an active exception"), and a finished
        sys.stderr.flush()  # build would then count as failed; nothing is left to clean up here
        os._exit(code)
    return code


def _command(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    where = ""  # under torchrun, which rank says so
    try:
        if args.command != "build" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(f"only 'galleria build' runs under torchrun: build with torchrun, then run "
                             f"'galleria {args.command}'" + (" --no-build" if args.command == "gh-deploy" else "")
                             + " in one process")
        if args.command == "build":
            from galleria.commands.build import build, summary
            from galleria.distributed import join, leave

            ranks = join()
            where = f"rank {ranks.rank}: " if ranks.world > 1 else ""
            report = build(args.config_file, args.site_dir, clean=args.clean, strict=args.strict,
                           quiet=args.quiet or not ranks.first, site_url=args.site_url)
            leave()
            if ranks.first:
                print(summary(report))
        elif args.command == "serve":
            from galleria.commands.serve import serve

            try:
                serve(args.config_file, args.dev_addr, quiet=args.quiet, site_url=args.site_url)
            except KeyboardInterrupt:  # the way to stop a server, not a failure
                print("galleria: stopped serving", file=sys.stderr)
        elif args.command == "layers":
            from galleria.commands.layers import layers

            print(layers(args.config_file, args.model))
        elif args.command == "new":
            from galleria.commands.new import new, next_steps

            print(next_steps(args.directory, new(args.directory)))
        elif args.command == "gh-deploy":
            from galleria.commands.deploy import gh_deploy

            print(gh_deploy(args.config_file, args.remote, args.remote_branch, args.message,
                            build_first=not args.no_build, force=args.force, quiet=args.quiet,
                            site_url=args.site_url))
        elif args.command == "schema":
            from galleria.commands.schema import schema

            sys.stdout.write(schema(args.output))
        elif args.command == "export":
            from galleria.commands.export import export

            folder = export(args.config_file, args.format, args.output, build_first=not args.no_build,
                            quiet=args.quiet)
            print(f"Exported every unit's record to {folder}/<model>/<layer>.{args.format}")
        return 0
    except GalleriaError as exc:
        print(f"galleria: error: {where}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"galleria: {where}interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line unless asked for more
        if args.debug:
            raise
        print(f"galleria: internal error: {where}{type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
