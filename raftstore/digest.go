package raftstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Digest returns a SHA-256 over the whole replicated state (every bucket,
// key and value in order, bodies included) except the node-local applied
// index and term, with the applied index it was taken at. Two nodes at the
// same applied index must return the same digest (DESIGN.md invariant 3).
func (s *Store) Digest() (digest string, applied uint64, err error) {
	return s.digest(nil)
}

// digest hashes every bucket but those skip names.
func (s *Store) digest(skip [][]byte) (digest string, applied uint64, err error) {
	err = s.fsm.view(func(tx *bolt.Tx) error {
		applied = getU64(tx.Bucket(bMeta), kAppliedIndex)
		h := sha256.New()
		var n [8]byte
		write := func(b []byte) {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
		for _, name := range allBuckets {
			if slices.ContainsFunc(skip, func(b []byte) bool { return bytes.Equal(b, name) }) {
				continue
			}
			write(name)
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if bytes.Equal(name, bMeta) && (bytes.Equal(k, kAppliedIndex) || bytes.Equal(k, kAppliedTerm)) {
					return nil
				}
				write(k)
				write(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		digest = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	return digest, applied, err
}
