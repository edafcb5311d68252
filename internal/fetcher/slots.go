package fetcher

import "sync"

// Slots counts the deliveries a consumer holds against its capacity. Safe
// for concurrent use.
type Slots struct {
	mu    sync.Mutex
	cap   int
	held  int
	freed chan struct{}
}

// NewSlots returns capacity free slots.
func NewSlots(capacity int) *Slots {
	return &Slots{cap: capacity, freed: make(chan struct{}, 1)}
}

// Acquire takes up to n free slots and returns how many it took.
func (s *Slots) Acquire(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = max(min(n, s.cap-s.held), 0)
	s.held += n
	return n
}

// Release gives n slots back.
func (s *Slots) Release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.held -= n
	if s.held < 0 {
		panic("fetcher: more slots released than held")
	}
	s.mu.Unlock()
	s.Notify()
}

// Notify wakes a waiter on Freed without releasing anything: held slots
// became usable by a claim (fetcher Config.Ready).
func (s *Slots) Notify() {
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// Free is the number of free slots.
func (s *Slots) Free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cap - s.held
}

// Held is the number of slots taken.
func (s *Slots) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Freed receives after a Release or Notify (coalesced).
func (s *Slots) Freed() <-chan struct{} { return s.freed }
