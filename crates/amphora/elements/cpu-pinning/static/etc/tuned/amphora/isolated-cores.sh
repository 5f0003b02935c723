#!/bin/bash
# Every vCPU but the first.
n=$(nproc --all)
if [ "$n" -gt 1 ]; then printf '1-%d' $((n - 1)); fi
