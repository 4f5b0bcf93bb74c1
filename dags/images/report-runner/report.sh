#!/bin/sh
echo "report for ${1:-today}: $(date -u)"
