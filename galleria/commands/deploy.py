"""``galleria gh-deploy``: publish the built site on the branch GitHub Pages serves, like ``mkdocs gh-deploy``.

The site's files become one new commit on that branch, made with git's plumbing and a temporary
index file: the user's working tree, index and current branch are never touched, so deploying
from the middle of unfinished work is safe.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from galleria import __version__
from galleria.commands.build import MARKER, build, summary
from galleria.config import load_config
from galleria.errors import GalleriaError

# https://USER.github.io/REPO/ from https://github.com/USER/REPO(.git), git@github.com:USER/REPO(.git)
# or ssh://git@github.com/USER/REPO(.git)
GITHUB_REMOTE = re.compile(r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
                           r"(?P<user>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?/?$")


def gh_deploy(config_file: str | Path = "site.yaml", remote: str = "origin", branch: str = "gh-pages",
              message: str | None = None, build_first: bool = True, force: bool = False,
              quiet: bool = False, site_url: str | None = None) -> str:
    """Build (unless ``build_first`` is false), commit the output folder on ``branch`` and push it
    to ``remote``; returns where the site will be served."""
    config = load_config(config_file, site_url)
    git = Git(config.root)
    url = git.remote_url(remote)
    if git.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() == f"refs/heads/{branch}":
        raise GalleriaError(f"you are on branch '{branch}', which gh-deploy replaces with the built site: "
                            "switch to your source branch first, or pass -b")
    if build_first:
        report = build(config_file, quiet=quiet, site_url=site_url)
        if not quiet:
            print(summary(report))
        site = Path(report.output)
    else:
        site = config.site.output_dir
        if not (site / MARKER).is_file():
            state = "was not built by galleria" if site.is_dir() else "does not exist"
            raise GalleriaError(f"{site} {state}: run `galleria build` first, or drop --no-build")

    parent = git.previous_tip(remote, branch)
    tree = git.site_tree(site, parent)
    head = git.run("rev-parse", "--short", "--verify", "--quiet", "HEAD", check=False).stdout.strip()
    message = message or f"Deployed {head + ' ' if head else ''}with galleria {__version__}"
    commit = git.run("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message).stdout.strip()
    git.run("update-ref", "-m", "galleria gh-deploy", f"refs/heads/{branch}", commit)
    git.push(remote, branch, force)

    pushed = f"Pushed {commit[:7]} to branch '{branch}' of {remote} ({_without_credentials(url)})"
    cname = git.run("cat-file", "blob", f"{commit}:CNAME", check=False).stdout.strip()
    served = f"https://{cname}/" if cname else pages_url(url)
    if not served:
        return pushed
    unset = "" if config.site.url == served else \
        f"\nTip: set site.url to {served} in site.yaml for canonical links, a sitemap and link previews."
    return f"{pushed}: GitHub Pages will serve it at {served}{unset}"


def pages_url(remote_url: str) -> str | None:
    """Where GitHub Pages serves a github.com repository's site; None for other hosts."""
    found = GITHUB_REMOTE.match(remote_url)
    if found is None:
        return None
    user, repo = found["user"].lower(), found["repo"]
    return f"https://{user}.github.io/" + ("" if repo.lower() == f"{user}.github.io" else f"{repo}/")


class Git:
    """git commands run against the repository holding site.yaml, with errors as one line."""

    def __init__(self, folder: Path):
        if shutil.which("git") is None:
            raise GalleriaError("git is not installed (or not on PATH): gh-deploy needs it "
                                "(https://git-scm.com/downloads)")
        # English messages whatever the user's locale: push failures are recognised by their words.
        self.env = {**os.environ, "LC_ALL": "C"}
        self.git_dir = None
        found = self.run("rev-parse", "--absolute-git-dir", cwd=folder, check=False)
        if found.returncode:
            raise GalleriaError(f"{folder} is not inside a git repository: gh-deploy pushes a branch of it "
                                "(run `git init` and add a remote with `git remote add origin URL`)")
        self.git_dir = found.stdout.strip()
        for who in ("AUTHOR", "COMMITTER"):  # a fresh machine or CI runner may have no identity at all
            if self.run("var", f"GIT_{who}_IDENT", check=False).returncode:
                for key, fallback in (("NAME", "galleria"), ("EMAIL", "galleria@localhost")):
                    configured = self.run("config", f"user.{key.lower()}", check=False).stdout.strip()
                    self.env.setdefault(f"GIT_{who}_{key}", configured or fallback)

    def run(self, *args: str, check: bool = True, env: dict | None = None, cwd: Path | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        where = [f"--git-dir={self.git_dir}"] if self.git_dir else []
        done = subprocess.run(["git", *where, *args], capture_output=True, text=True, env=env or self.env,
                              cwd=cwd, input=stdin)
        if check and done.returncode:
            verb = next(a for a in args if not a.startswith("-"))
            raise GalleriaError(f"git {verb} failed: {_reason(done.stderr)}")
        return done

    def remote_url(self, remote: str) -> str:
        found = self.run("remote", "get-url", remote, check=False)
        if found.returncode:
            raise GalleriaError(f"no git remote '{remote}': add one with `git remote add {remote} URL`, or pass -r")
        return found.stdout.strip()

    def previous_tip(self, remote: str, branch: str) -> str | None:
        """The commit the new one follows: the remote's branch (fetched), else the local one, else none."""
        listed = self.run("ls-remote", "--heads", remote, f"refs/heads/{branch}").stdout.splitlines()
        tip = next((line.split()[0] for line in listed if line.endswith(f"\trefs/heads/{branch}")), None)
        if tip:
            self.run("fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}")
            return tip
        local = self.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
        return local.stdout.strip() or None

    def site_tree(self, site: Path, parent: str | None) -> str:
        """The tree of the site's files, plus .nojekyll and the previous CNAME when the site lacks them,
        without galleria's own marker file (its warnings may name local paths)."""
        with tempfile.TemporaryDirectory(prefix="galleria-deploy-") as tmp:
            env = {**self.env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            # --force: the user's excludes (.git/info/exclude, a global gitignore) must not drop site files
            self.run(f"--work-tree={site}", "add", "--all", "--force", "--", ".", f":(exclude){MARKER}",
                     env=env, cwd=site)
            extra = {}
            if not (site / ".nojekyll").exists():  # Jekyll would hide folders starting with '_'
                extra[".nojekyll"] = self.run("hash-object", "-w", "--stdin", stdin="").stdout.strip()
            if parent and not (site / "CNAME").exists():  # a custom domain set up on the branch stays
                kept = self.run("rev-parse", "--verify", "--quiet", f"{parent}:CNAME", check=False).stdout.strip()
                if kept:
                    extra["CNAME"] = kept
            for name, blob in extra.items():
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
            return self.run("write-tree", env=env).stdout.strip()

    def push(self, remote: str, branch: str, force: bool) -> None:
        pushed = self.run("push", *(["--force"] if force else []), remote,
                          f"refs/heads/{branch}:refs/heads/{branch}", check=False)
        if not pushed.returncode:
            return
        reason = _reason(pushed.stderr)
        if "rejected" in pushed.stderr and not force:
            raise GalleriaError(f"git push to {remote} was rejected ({reason}): "
                                f"pass --force to replace its '{branch}' branch")
        raise GalleriaError(f"git push to {remote} failed: {reason}")


def _without_credentials(text: str) -> str:
    """URLs with their user and token removed: CI remotes carry one, and logs are public."""
    return re.sub(r"(https?://)[^/@\s]+@", r"\1", text)


def _reason(stderr: str) -> str:
    """git's own explanation in one line: the rejected ref's line of a push, else the last line."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip() and not l.strip().startswith("hint:")]
    rejected = [l for l in lines if "rejected]" in l]
    return _without_credentials(re.sub(r"^(fatal|error): ", "", (rejected or lines or ["no message"])[-1]))
