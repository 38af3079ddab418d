// Package names validates the names requests carry: DNS labels, host and
// domain names, GUIDs. Each check is a plain loop over the bytes, so
// importing it costs a program (and every container init, which is the
// same binary) no start-up work, unlike package-level regular expressions.
package names

import "strings"

// Label reports whether s is one DNS label: 1-63 letters, digits and '-',
// not starting or ending with '-'. With underscore, '_' counts as a letter
// (service names, some directory domains).
func Label(s string, underscore bool) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case alnum(c), underscore && c == '_':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}

// Hostname reports whether s is a host name the kernel and a hosts file
// take: RFC 1123 labels, at most 64 characters.
func Hostname(s string) bool {
	return s != "" && len(s) <= 64 && labels(s, false)
}

// Domain reports whether name (without a trailing dot) is a DNS name of at
// most 253 characters whose labels may hold '_'.
func Domain(name string) bool {
	return name != "" && len(name) <= 253 && labels(name, true)
}

func labels(name string, underscore bool) bool {
	for l := range strings.SplitSeq(name, ".") {
		if !Label(l, underscore) {
			return false
		}
	}
	return true
}

// GUID reports whether s is a GUID as hcsshim writes them:
// 8-4-4-4-12 hexadecimal digits, in either case.
func GUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !hex(s[i]) {
				return false
			}
		}
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func hex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
