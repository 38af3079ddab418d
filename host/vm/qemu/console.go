//go:build linux

package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/sirupsen/logrus"
)

// maxConsoleLine is where a console line without a newline is cut.
const maxConsoleLine = 4096

// streamConsole copies the serial console from r, line by line, to the
// console log file, to the optional copy, and to the logger at debug
// level, until r ends (QEMU exited). A failing copy is dropped, not retried.
func streamConsole(r io.Reader, file io.Writer, copyTo io.Writer, logger *logrus.Entry) {
	br := bufio.NewReaderSize(r, maxConsoleLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := file.Write(line); werr != nil && file != io.Discard {
				logger.WithError(werr).Warn("console log file write failed; no longer writing it")
				file = io.Discard
			}
			if copyTo != nil {
				if _, werr := copyTo.Write(line); werr != nil {
					logger.WithError(werr).Warn("console copy write failed; no longer copying")
					copyTo = nil
				}
			}
			logger.Debug(string(bytes.TrimRight(line, "\r\n")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tailBuffer keeps the last max bytes written to it, for QEMU's stderr in
// error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
