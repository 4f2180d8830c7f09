"""The GitHub workflows cannot run here: they are checked against GitHub's workflow schema (check-jsonschema's vendored
copy, no network), and they must run the very commands that CI and README use."""
import re, shutil, subprocess
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
WF = ROOT/'.github'/'workflows'

def _runs(name): return [s['run'] for job in yaml.safe_load((WF/name).read_text())['jobs'].values() for s in job['steps'] if 'run' in s]

def test_workflows_match_githubs_schema():
    exe = shutil.which('check-jsonschema')
    if not exe: pytest.skip("schema check skipped: check-jsonschema is not installed (pip install -e '.[dev]')")
    r = subprocess.run([exe, '--builtin-schema', 'vendor.github-workflows', *map(str, sorted(WF.glob('*.yml')))], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = ROOT/'.pytest_cache'/'bad-workflow.yml'  # and the check fails on a broken one
    bad.parent.mkdir(exist_ok=True)
    bad.write_text((WF/'docs.yml').read_text().replace('runs-on:', 'runs_on:'))
    assert subprocess.run([exe, '--builtin-schema', 'vendor.github-workflows', str(bad)], capture_output=True).returncode != 0

def test_workflows_run_the_commands_of_ci_and_readme():
    readme = (ROOT/'README.md').read_text()
    assert _runs('test.yml') == ['bash .ci/run']
    (docs_cmd,) = _runs('docs.yml')
    assert docs_cmd in readme, docs_cmd  # README's documentation command, word for word
    on = yaml.safe_load((WF/'test.yml').read_text())[True]  # YAML 1.1 reads the key `on` as True
    assert {'push', 'pull_request'} <= set(on)
    docs = yaml.safe_load((WF/'docs.yml').read_text())
    assert docs[True]['push']['branches'] == ['main'] and docs['permissions']['pages'] == 'write'
    upload = [s for s in docs['jobs']['build']['steps'] if 'upload-pages-artifact' in s.get('uses', '')]
    assert upload and upload[0]['with']['path'] == '_docs' and re.search(r"--out|_docs", (ROOT/'docs'/'build.py').read_text())
