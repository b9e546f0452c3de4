#!/bin/sh
# Rebuilds the shipped models from data/iris.csv, byte for byte (see
# models/README.md). Run it from anywhere; it works in the repository root.
set -eu
cd "$(dirname "$0")/.."
go build -o bin/modelworker ./cmd/modelworker
bin/modelworker train -data data/iris.csv -kind softmax -name iris -version 1 -epochs 500 -lr 0.05 -l2 0.001 -seed 1 -out models/iris-v1.json
bin/modelworker train -data data/iris.csv -kind mlp -hidden 16 -name iris -version 2 -epochs 1000 -lr 0.01 -l2 0.01 -seed 2 -out models/iris-v2.json
bin/modelworker train -data data/iris.csv -kind mlp -hidden 8,8 -name iris -version 3 -epochs 1500 -lr 0.01 -l2 0.003 -seed 3 -out models/iris-v3.json
