package model

import (
	"os"
	"testing"
)

// FuzzParse: Parse never panics, and a model it accepts predicts finite
// probabilities that sum to 1 for an all-zero row, and encodes to a file it
// accepts again.
func FuzzParse(f *testing.F) {
	for _, v := range shippedVersions {
		if data, err := os.ReadFile(shippedPath(v)); err == nil {
			f.Add(data)
		}
	}
	f.Add(marshal(f, tinySoftmax()))
	f.Add(marshal(f, tinyMLP()))
	f.Add([]byte(`{"format_version":1,"name":"a","version":"1","kind":"softmax","features":["x"],"classes":["p","q"],` +
		`"scaling":{"mean":[1e12],"std":[1e-12]},"layers":[{"weights":[[1e6],[-1e6]],"biases":[1e6,-1e6]}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"layers":[{"weights":[[]],"biases":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		probs := make([]float64, len(m.Classes))
		if err := m.Predict(make([]float64, len(m.Features)), probs); err != nil {
			t.Fatalf("Predict on a zero row of a parsed model: %v", err)
		}
		sumIsOne(t, probs)
		encoded, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a parsed model: %v", err)
		}
		if _, err := Parse(encoded); err != nil {
			t.Fatalf("Parse of an encoded model: %v\n%s", err, encoded)
		}
	})
}
