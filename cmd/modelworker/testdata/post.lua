-- wrk script for the model worker's one-row /predict (acceptance point 6
-- of issue 3):
--   modelworker -model models/iris-v1.json -listen 127.0.0.1:8000 &
--   wrk -t2 -c32 -d10s -s cmd/modelworker/testdata/post.lua http://127.0.0.1:8000/predict
-- wrk prints a "Non-2xx or 3xx responses" line if any answer was not 200:
-- a run with that line measured refusals, not predictions.
wrk.method = "POST"
wrk.body   = '{"input":[5.1,3.5,1.4,0.2]}'
wrk.headers["Content-Type"] = "application/json"
