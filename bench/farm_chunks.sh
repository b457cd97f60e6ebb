#!/usr/bin/env bash
# 3-chunk OpenJD run vs a single run on davis16_car-shadow (40 frames, 854x480, keyframes 0 and 20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${SMITE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
M="${TMPDIR:-/tmp}/smite_farm_chunks"; rm -rf $M; mkdir -p $M
cat > $M/car.json <<JSON
{"plate": "$DATA/davis16_car-shadow/frames/%05d.jpg", "frames": "0-39", "parts": ["car"],
 "references": [{"frame": 0, "labels": "$DATA/davis16_car-shadow/masks/00000.png"},
                {"frame": 20, "labels": "$DATA/davis16_car-shadow/masks/00020.png"}]}
JSON
s=$(date +%s.%N); .venv/bin/smite segment --shot $M/car.json --out $M/single/m.####.exr --quiet > /dev/null; e=$(date +%s.%N)
echo "single run: $(echo "$e - $s" | bc) s"
.venv/bin/smite farm openjd --shot $M/car.json --out $M/farm/m.####.exr --chunk 14 --output $M/job.yaml
s=$(date +%s.%N); .venv/bin/openjd run $M/job.yaml > $M/openjd.log 2>&1; e=$(date +%s.%N)
echo "openjd run, 3 chunks in series: $(echo "$e - $s" | bc) s"
cmp() { .venv/bin/python - "$@" <<'PY'
import sys, numpy as np
from smite.io.matte import read_matte
a, b = sys.argv[1], sys.argv[2]
d = max(float(np.abs(read_matte(a % f)[1] - read_matte(b % f)[1]).max()) for f in range(40))
print(f"max abs difference over 40 frames: {d:.6f}")
PY
}
cmp $M/single/m.%04d.exr $M/farm/m.%04d.exr
rm $M/farm/m.0016.exr; head -c 2000 $M/farm/m.0020.exr > $M/t && mv $M/t $M/farm/m.0020.exr
before=$(stat -c %Y $M/farm/m.0015.exr)
s=$(date +%s.%N); .venv/bin/openjd run $M/job.yaml --step Segment --task-param Frame=14-26 > $M/retry.log 2>&1; e=$(date +%s.%N)
echo "retried chunk 14-26 after deleting frame 16 and truncating frame 20: $(echo "$e - $s" | bc) s"
grep -o "PROGRESS [0-9]*/[0-9]*" $M/retry.log | tr '\n' ' '; echo
echo "frame 15 untouched: $([ "$(stat -c %Y $M/farm/m.0015.exr)" = "$before" ] && echo yes || echo no)"
cmp $M/single/m.%04d.exr $M/farm/m.%04d.exr
