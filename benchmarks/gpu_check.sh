#!/usr/bin/env bash
# The GPU check: one short run, one JSON file.
#
#   benchmarks/gpu_check.sh                 # on a GPU machine: the full check (< 8 min on an H100/H200)
#   benchmarks/gpu_check.sh --device cpu    # smoke mode: tiny configs, a minute or two on a CPU
#   benchmarks/gpu_check.sh --budget-s 300 --only "audio encoder_phase"   # options of gpu_check.py
#
# Writes $OUT/gpu_check.json when OUT is set, else benchmarks/out/gpu_check.json (smoke:
# gpu_check_smoke.json). Downloads nothing: it uses the Python that has torch (PYTHON, else
# .venv/bin/python when it works, else python3), installs wheels carried in benchmarks/wheels/
# (made with benchmarks/fetch_wheels.sh) only for packages that python lacks, then makes the repo
# importable with `pip install --no-deps --no-build-isolation -e . -e plugins/<each>` (the core and
# each plugin are distributions of their own) or, failing that, PYTHONPATH
# plus an entry-point shim (the plugins are found through entry points). Plugins that cannot be
# imported are left out through BRIDLE_PLUGINS (their measurements then fail alone).
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
T0=$(date +%s)

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python
else PY=python3; fi
echo "gpu_check: python $PY ($($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'))"

# 1. third-party packages the project imports, from carried wheels when missing
missing=$($PY - <<'PYEOF'
import importlib
mods = ["yacs", "fvcore", "iopath", "termcolor", "soundfile", "decord", "pytorchvideo", "timm", "torchaudio", "torchvision"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "gpu_check: missing python packages: $missing"
  if ls benchmarks/wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bridle_site \
      benchmarks/wheels/*.whl && export PYTHONPATH=/tmp/bridle_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check: no benchmarks/wheels/*.whl to install them from (benchmarks/fetch_wheels.sh makes them)"
  fi
fi

# 2. the project itself (entry points for the plugins)
has_eps() { $PY -c "from importlib.metadata import entry_points as e; import sys; sys.exit(0 if {'audio','image','video'} <= {x.name for x in e(group='bridle.plugins')} else 1)" 2>/dev/null; }
if ! ($PY -c "import bridle, bridle_audio" 2>/dev/null && has_eps); then
  $PY -m pip install -q --no-deps --no-build-isolation -e . -e plugins/audio -e plugins/image -e plugins/video \
    >/tmp/bridle_pip.log 2>&1 || echo "gpu_check: pip install -e . failed (see /tmp/bridle_pip.log); using PYTHONPATH"
fi
if ! ($PY -c "import bridle, bridle_audio" 2>/dev/null && has_eps); then
  SHIM=/tmp/bridle_ep
  mkdir -p $SHIM/bridle_local-0.0.dist-info
  printf 'Metadata-Version: 2.1\nName: bridle-local\nVersion: 0.0\n' > $SHIM/bridle_local-0.0.dist-info/METADATA
  printf '[bridle.plugins]\naudio = bridle_audio\nimage = bridle_image\nvideo = bridle_video\n' > $SHIM/bridle_local-0.0.dist-info/entry_points.txt
  export PYTHONPATH=$REPO:$REPO/plugins/audio:$REPO/plugins/image:$REPO/plugins/video:$SHIM${PYTHONPATH:+:$PYTHONPATH}
fi

# 3. only the plugins that import
ok=$(BRIDLE_PLUGINS=none $PY - <<'PYEOF'
import importlib, sys
ok = []
for p in ("audio", "image", "video"):
    try:
        importlib.import_module(f"bridle_{p}")
        ok.append(p)
    except Exception as e:
        print(f"gpu_check: plugin {p} does not import ({type(e).__name__}: {e}); left out", file=sys.stderr)
print(",".join(ok))
PYEOF
)
export BRIDLE_PLUGINS=${ok:-none}
echo "gpu_check: plugins $BRIDLE_PLUGINS; setup took $(( $(date +%s) - T0 )) s"

export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
# A hard stop behind gpu_check.py's own budget (a compilation cannot be interrupted from inside):
# the JSON is rewritten after every measurement, so what ran before the stop is kept.
HARD=${GPU_CHECK_HARD_TIMEOUT_S:-480}
timeout -k 10 "$HARD" $PY benchmarks/gpu_check.py "$@"
rc=$?
[ $rc = 124 ] && echo "gpu_check: hard timeout ($HARD s) reached; the JSON holds the measurements done before it"
echo "gpu_check: total $(( $(date +%s) - T0 )) s"
exit $rc
