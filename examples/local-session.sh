#!/usr/bin/env bash
# The typical session against the local AWS (README, "The typical session on the local AWS").
# First, in another shell:  tuner emulate --speed 60 --instances 4 --capacity examples/emulated-capacity.json
# and export the AWS_* lines it prints. TRACES: the shared traces (../shared/data/traces).
set -euo pipefail
SPEED=${SPEED:-60}
TRACES=${TRACES:-../shared/data/traces}

# Traffic to look back on: a day of a real load balancer's requests, played in 15 minutes.
cat > elb-day.toml <<TOML
name = "elb-day"
[[segment]]
replay = "$(cd "$TRACES" && pwd)/elb_request_count_8c0756.csv"
start = "2d"
limit = "1d"
time_scale = 0.0104166667
peak_rps = 6
TOML
tuner loadtest --profile elb-day.toml --endpoint demo-endpoint --speed "$SPEED" --out runs/history

# The typical session.
tuner snapshot --endpoint demo-endpoint --out before.json
tuner calibrate --endpoint demo-endpoint --slo-p99-ms 2500 --start-rps 0.5 --out capacity.json
tuner collect --endpoint demo-endpoint --days 1 --trim --out history.csv
tuner tune --profile history.toml --profile flash-spike --scale-to-capacity 4 \
    --capacity capacity.json --slo-p99-ms 2500 --max-error-rate 0.01 \
    --endpoint demo-endpoint --out reports/retune
tuner tune --profile history.toml --profile flash-spike --scale-to-capacity 4 \
    --capacity capacity.json --slo-p99-ms 2500 --max-error-rate 0.01 \
    --endpoint demo-endpoint --out reports/retune \
    --live --top 2 --live-profile history.toml --live-window 0,5m
tuner apply reports/retune/recommended.policy.json --endpoint demo-endpoint --dry-run
tuner apply reports/retune/recommended.policy.json --endpoint demo-endpoint
