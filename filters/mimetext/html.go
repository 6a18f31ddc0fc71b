package mimetext

import (
	"html"
	"strings"
)

// StripHTML returns the text of an HTML document (tags removed, script
// and style contents dropped, entities decoded, block tags as line
// breaks) and the href/src URLs it names. It is a single pass with no
// allocation per tag beyond the output, and it never fails: broken markup
// degrades to text.
func StripHTML(s string) (string, []string) {
	var b strings.Builder
	b.Grow(len(s) / 2)
	var urls []string
	skipUntil := "" // "</script" or "</style" while inside one
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			if skipUntil == "" {
				b.WriteString(html.UnescapeString(s))
			}
			break
		}
		if skipUntil == "" {
			b.WriteString(html.UnescapeString(s[:lt]))
		}
		s = s[lt:]
		if strings.HasPrefix(s, "<!--") {
			end := strings.Index(s, "-->")
			if end < 0 {
				break
			}
			s = s[end+3:]
			continue
		}
		gt := strings.IndexByte(s, '>')
		if gt < 0 {
			break
		}
		tag := s[1:gt]
		s = s[gt+1:]
		name := strings.ToLower(tagName(tag))
		if skipUntil != "" {
			if "<"+name == skipUntil {
				skipUntil = ""
			}
			continue
		}
		switch name {
		case "script", "style":
			skipUntil = "</" + name
		case "br", "p", "/p", "div", "/div", "tr", "li", "h1", "h2", "h3", "table", "/table":
			b.WriteByte('\n')
		default:
			b.WriteByte(' ')
		}
		if u := attr(tag, "href"); u != "" {
			urls = append(urls, html.UnescapeString(u))
		} else if u := attr(tag, "src"); u != "" {
			urls = append(urls, html.UnescapeString(u))
		}
	}
	return b.String(), urls
}

func tagName(tag string) string {
	end := strings.IndexAny(tag, " \t\r\n/")
	if end == 0 && len(tag) > 0 && tag[0] == '/' {
		rest := tag[1:]
		if e := strings.IndexAny(rest, " \t\r\n>"); e >= 0 {
			return "/" + rest[:e]
		}
		return tag
	}
	if end < 0 {
		return tag
	}
	return tag[:end]
}

// attr returns a tag attribute's value (quoted or not), "" if absent.
func attr(tag, name string) string {
	lower := strings.ToLower(tag)
	i := strings.Index(lower, name+"=")
	if i < 0 {
		return ""
	}
	v := tag[i+len(name)+1:]
	if v == "" {
		return ""
	}
	if q := v[0]; q == '"' || q == '\'' {
		end := strings.IndexByte(v[1:], q)
		if end < 0 {
			return v[1:]
		}
		return v[1 : 1+end]
	}
	end := strings.IndexAny(v, " \t\r\n")
	if end < 0 {
		return v
	}
	return v[:end]
}
