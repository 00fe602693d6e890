#!/usr/bin/env bash
# The checks a session lent a GPU machine runs, in one call (that machine has PyTorch and Lightning but not
# explab's other dependencies, and cannot reach a package registry).
#
#   bash bench/gpu_session.sh prepare      # here: wheels of what the GPU image lacks, and explab's, into .whl/
#   bash bench/gpu_session.sh run          # there, from the repository root, with .whl carried along
#
# `run` installs the wheels, runs the GPU tests (tests/test_gpu.py) and the trial-packing bench on the
# digits search, and copies their logs to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."

# in requirements/lock.txt but already in the GPU image, or only needed for development
IN_IMAGE='^(torch|lightning|lightning-utilities|pytorch-lightning|torchmetrics|numpy|scipy|scikit-learn|pandas|matplotlib|pyarrow|psutil|nvidia-ml-py|pyyaml|requests|packaging|protobuf|cloudpickle|click|jinja2|markupsafe|werkzeug|fsspec|filelock|typing-extensions|tqdm|pillow|contourpy|cycler|fonttools|kiwisolver|pyparsing|python-dateutil|six|pytz|tzdata|joblib|threadpoolctl|sympy|mpmath|networkx|certifi|charset-normalizer|idna|urllib3|aiohttp|aiohappyeyeballs|aiosignal|attrs|frozenlist|multidict|propcache|yarl|anyio|h11|httpcore|httpx|sniffio|rich|markdown-it-py|mdurl|pygments|pytest|pluggy|iniconfig|zipp|triton|setuptools|markdown|pyyaml|grpcio|tabulate|colorama|wrapt|narwhals|regex|toolz|xxhash|msgpack|etils|annotated-doc|mypy-extensions|pathspec|cuda-.*|nvidia-.*)$'
DEV_ONLY='^(ruff|mypy|librt|ast-serialize|ipykernel|ipython|ipython-pygments-lexers|jupyter-client|jupyter-core|nbclient|nbformat|playwright|pyee|greenlet|debugpy|pyzmq|tornado|psycopg|psycopg-binary|jedi|parso|pexpect|ptyprocess|pure-eval|stack-data|executing|asttokens|comm|matplotlib-inline|prompt-toolkit|wcwidth|nest-asyncio2|traitlets|fastjsonschema|jsonschema|jsonschema-specifications|referencing|rpds-py|platformdirs)$'

prepare() {
    rm -rf .whl && mkdir -p .whl
    local wanted
    wanted=$(grep -E '^[A-Za-z0-9_.-]+==' requirements/lock.txt | while IFS='=' read -r name _; do
        canonical=$(echo "$name" | tr 'A-Z_' 'a-z-')
        if ! [[ $canonical =~ $IN_IMAGE || $canonical =~ $DEV_ONLY ]]; then grep -iE "^$name==" requirements/lock.txt; fi
    done)
    # antlr4 4.9.3 (Hydra's pin) is published as a source archive only: built here, it is pure Python
    echo "$wanted" | grep -v '^antlr4' | python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl -r /dev/stdin || return 1
    .venv/bin/python -m pip wheel -q --no-deps -w .whl "$(echo "$wanted" | grep '^antlr4')" . || return 1
    du -sh .whl
}

run() {
    local out=${OUT:-/tmp/gpu-session}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || return 1
    # the checkout's code, not the wheel's copy, is what is checked
    export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
    nvidia-smi -L
    timeout 200 python3 -m pytest tests/test_gpu.py -v -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
    EXPLAB_BENCH_REPEATS=${EXPLAB_BENCH_REPEATS:-1} timeout 300 python3 bench/gpu_packing.py digits 2>&1 \
        | tee "$out/gpu_packing.log"
}

case ${1:-} in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac
