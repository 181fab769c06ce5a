#!/usr/bin/env bash
# Soak: the money invariant over 10,000 randomized voucher lifecycles per backend
# (override with PILEPASS_LIFECYCLES; replay a failure with PILEPASS_SEED).
set -euo pipefail
cd "$(dirname "$0")/.."
export PILEPASS_LIFECYCLES="${PILEPASS_LIFECYCLES:-10000}"
exec npx vitest run test/cloud/money-invariant.test.ts --testTimeout=3600000
