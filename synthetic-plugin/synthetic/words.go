package synthetic

import "math/rand/v2"

// words is the vocabulary of synthetic answers and transcripts.
var words = [...]string{
	"the", "bridge", "is", "out", "past", "mill", "river", "lantern",
	"quiet", "north", "road", "stone", "golden", "fox", "under", "morning",
	"harbour", "signal", "keeps", "turning", "slowly", "over", "hill", "and",
	"a", "small", "boat", "waits", "near", "tower", "bright", "rain",
	"falls", "on", "old", "gate", "while", "wind", "carries", "songs",
	"through", "green", "valley", "where", "farmers", "gather", "every", "autumn",
	"copper", "kettle", "sings", "beside", "warm", "hearth", "as", "children",
	"count", "stars", "above", "forest", "then", "sleep", "until", "dawn",
}

// wordStream picks words deterministically from a task's key.
type wordStream struct{ r *rand.Rand }

func newWordStream(k [32]byte) *wordStream {
	return &wordStream{r: rand.New(rand.NewChaCha8(k))}
}

// next returns the next word.
func (s *wordStream) next() string { return words[s.r.IntN(len(words))] }

// intN returns a number in [0, n) from the same stream.
func (s *wordStream) intN(n int) int { return s.r.IntN(n) }
