package nginximport

import "strings"

// Format writes directives back as nginx config text, one statement per
// line, blocks indented by four spaces. Parsing the text again gives the
// same directives (names, arguments and blocks; lines differ): a word is
// written bare only when it is made of characters that mean nothing
// special to the tokenizer, and in double quotes otherwise.
func Format(tree []*Directive) string {
	var b strings.Builder
	format(&b, tree, 0)
	return b.String()
}

func format(b *strings.Builder, list []*Directive, depth int) {
	for _, d := range list {
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString(word(d.Name))
		for _, a := range d.Args {
			b.WriteByte(' ')
			b.WriteString(word(a))
		}
		if !d.IsBlock {
			b.WriteString(";\n")
			continue
		}
		b.WriteString(" {\n")
		format(b, d.Block, depth+1)
		b.WriteString(strings.Repeat("    ", depth))
		b.WriteString("}\n")
	}
}

// word writes a value so that the tokenizer reads it back unchanged.
func word(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		bare := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("_./:=*~^@+-%,!?&|<>[]()", c) >= 0
		if !bare {
			return quote(s)
		}
	}
	return s
}

// quote writes s in double quotes, escaping what would end the string or
// be read as an escape, and tabs and line breaks as nginx's \t \r \n.
func quote(s string) string {
	return `"` + quoteEscapes.Replace(s) + `"`
}

var quoteEscapes = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\t", `\t`, "\r", `\r`, "\n", `\n`)
