package worker

import (
	"strconv"
	"time"
)

// The answers are written by hand into pooled buffers: they are small,
// fixed in shape, and on the hot path, where encoding/json would cost a
// map or a struct per row and reflection per value.

// appendPredict writes the /predict answer (shapes in the package doc).
func (s *Server) appendPredict(b []byte, bt *batch, sc *scratch) []byte {
	nc := len(s.classNames)
	if bt.single {
		best := sc.best[0]
		b = append(b, `{"prediction":`...)
		b = append(b, s.classNames[best]...)
		b = append(b, `,"probabilities":`...)
		b = s.appendProbMap(b, sc.probs[:nc])
		b = append(b, `,"confidence":`...)
		b = appendFloat(b, sc.conf[0], 64)
		return s.appendPredictTail(b)
	}
	b = append(b, `{"predictions":[`...)
	for r, best := range sc.best {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, s.classNames[best]...)
	}
	b = append(b, `],"probabilities":[`...)
	for r := range sc.best {
		if r > 0 {
			b = append(b, ',')
		}
		b = s.appendProbMap(b, sc.probs[r*nc:(r+1)*nc])
	}
	b = append(b, `],"confidences":[`...)
	for r, c := range sc.conf {
		if r > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, c, 64)
	}
	b = append(b, ']')
	return s.appendPredictTail(b)
}

// appendPredictTail ends a /predict answer: the -timestamp, then the
// model.
func (s *Server) appendPredictTail(b []byte) []byte {
	if s.cfg.Timestamp {
		b = append(b, `,"timestamp":`...)
		b = appendTimestamp(b, time.Now())
	}
	return append(b, s.tail...)
}

// appendProbMap writes {"setosa":0.97,...} in class order.
func (s *Server) appendProbMap(b []byte, p []float64) []byte {
	b = append(b, '{')
	for i, v := range p {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s.classKeys[i]...)
		b = appendFloat(b, v, 64)
	}
	return append(b, '}')
}

// appendInfer writes the $inference_response of the Open Inference
// Protocol: the requested output tensors, data flat in row-major order.
func (s *Server) appendInfer(b []byte, ib *inferBatch, sc *scratch) []byte {
	nc := len(s.classNames)
	n := ib.rows
	floatType, bits := "FP32", 32
	if ib.fp64 {
		floatType, bits = "FP64", 64
	}
	b = append(b, s.inferHead...)
	if ib.id != "" {
		b = append(b, `,"id":`...)
		b = appendJSONString(b, ib.id)
	}
	if s.cfg.Timestamp { // the protocol's response may hold a parameters object
		b = append(b, `,"parameters":{"timestamp":`...)
		b = appendTimestamp(b, time.Now())
		b = append(b, '}')
	}
	b = append(b, `,"outputs":[`...)
	for i, kind := range ib.outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"`...)
		b = append(b, outputNames[kind]...)
		b = append(b, `","shape":[`...)
		b = strconv.AppendInt(b, int64(n), 10)
		switch kind {
		case outPredictions, outLabel:
			b = append(b, `],"datatype":"BYTES","data":[`...)
			for r, best := range sc.best {
				if r > 0 {
					b = append(b, ',')
				}
				b = append(b, s.classNames[best]...)
			}
		case outProbabilities:
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(nc), 10)
			b = append(b, `],"datatype":"`...)
			b = append(b, floatType...)
			b = append(b, `","data":[`...)
			for j, v := range sc.probs[:n*nc] {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendFloat(b, v, bits)
			}
		case outConfidences:
			b = append(b, `],"datatype":"`...)
			b = append(b, floatType...)
			b = append(b, `","data":[`...)
			for r, c := range sc.conf {
				if r > 0 {
					b = append(b, ',')
				}
				b = appendFloat(b, c, bits)
			}
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// appendFloat writes v in the shortest form that reads back as the same
// float of that many bits. The worker never writes NaN or infinities:
// run refuses them before an answer is written.
func appendFloat(b []byte, v float64, bits int) []byte {
	if bits == 32 {
		v = float64(float32(v))
	}
	return strconv.AppendFloat(b, v, 'g', -1, bits)
}
