package otlp

import (
	"encoding/json"
	"math"
	"reflect"
)

// view makes a batch's columns JSON for golden files and comparisons:
// structs become objects of their exported fields (the batch's Sources
// left out), Strs their strings, floats may be NaN or infinite, and byte
// columns are numbers rather than base64.
func view(src *Sources, x any) any { return viewOf(src, reflect.ValueOf(x)) }

var (
	strType     = reflect.TypeFor[Str]()
	sourcesType = reflect.TypeFor[Sources]()
)

func viewOf(src *Sources, v reflect.Value) any {
	if v.Type() == strType {
		return src.String(v.Interface().(Str))
	}
	switch v.Kind() {
	case reflect.Pointer:
		return viewOf(src, v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			switch {
			case !f.IsExported() || f.Type == sourcesType:
			case f.Anonymous: // embedded columns, as encoding/json flattens them
				for k, x := range viewOf(src, v.Field(i)).(map[string]any) {
					m[k] = x
				}
			default:
				m[f.Name] = viewOf(src, v.Field(i))
			}
		}
		return m
	case reflect.Slice:
		s := make([]any, v.Len())
		for i := range s {
			s[i] = viewOf(src, v.Index(i))
		}
		return s
	case reflect.Float64:
		return nanSafe(v.Float())
	case reflect.Uint8:
		return v.Uint()
	}
	return v.Interface()
}

// nanSafe makes NaN and Inf representable in JSON.
type nanSafe float64

func (f nanSafe) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return json.Marshal("NaN")
	case math.IsInf(v, 1):
		return json.Marshal("+Inf")
	case math.IsInf(v, -1):
		return json.Marshal("-Inf")
	}
	return json.Marshal(v)
}

// sameLogs tells whether two batches hold the same log rows.
func sameLogs(a, b *Batch) bool {
	return reflect.DeepEqual(view(&a.Src, &a.Logs), view(&b.Src, &b.Logs))
}
