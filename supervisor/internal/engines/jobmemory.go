package engines

import (
	"crypto/sha256"
	"sync"
)

// jobMemory remembers, per job id, how many plugin instances the job
// brought down in a row, and which jobs this node refuses for good after
// they brought down two. Job ids come from the studio, so both are bounded
// in count and in bytes: each id is kept as its SHA-256, and the oldest
// entries go first once maxJobMemory are held. Its methods are safe for
// concurrent use.
type jobMemory struct {
	mu      sync.Mutex // guards all below
	crashes map[[32]byte]int
	refused map[[32]byte]string // → the plugin it brought down
	order   [][32]byte          // refused ids, oldest first
}

// maxJobMemory bounds each of the two sets. A refused job is one that
// crashed this node twice; a few thousand of them is already a node in
// deep trouble, and 4096 ids cost 128 KiB. An id pushed out is only
// offered here again (and crashes at most twice more).
const maxJobMemory = 4096

func newJobMemory() *jobMemory {
	return &jobMemory{crashes: map[[32]byte]int{}, refused: map[[32]byte]string{}}
}

// crash counts a crash caused by job and returns its count in a row.
func (m *jobMemory) crash(job string) int {
	k := sha256.Sum256([]byte(job))
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.crashes[k]; !ok && len(m.crashes) >= maxJobMemory {
		// Only jobs whose last run crashed are here; drop them all
		// rather than track their age: at worst a job gets one more
		// crash before it is refused.
		clear(m.crashes)
	}
	m.crashes[k]++
	return m.crashes[k]
}

// forget ends job's streak of crashes (it ran to a reported outcome).
func (m *jobMemory) forget(job string) {
	k := sha256.Sum256([]byte(job))
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.crashes, k)
}

// refuse records that this node refuses job from now on, after it brought
// down instances of plugin.
func (m *jobMemory) refuse(job, plugin string) {
	k := sha256.Sum256([]byte(job))
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.crashes, k)
	if _, ok := m.refused[k]; ok {
		return
	}
	if len(m.order) >= maxJobMemory {
		delete(m.refused, m.order[0])
		m.order = m.order[1:]
	}
	m.refused[k] = plugin
	m.order = append(m.order, k)
}

// refuses reports whether this node refuses job, and the plugin it
// brought down.
func (m *jobMemory) refuses(job string) (plugin string, refused bool) {
	k := sha256.Sum256([]byte(job))
	m.mu.Lock()
	defer m.mu.Unlock()
	plugin, refused = m.refused[k]
	return plugin, refused
}
