package contract

import "testing"

func TestValidInstance(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"default", true},
		{"a", true},
		{"lab-2", true},
		{"Team_A.prod", true},
		{"3f9a0c", true},
		{"", false},
		{"-lab", false},
		{"lab.", false},
		{"a=b", false},
		{"a,b", false},
		{"with space", false},
		{"ünïcode", false},
		{string(make([]byte, 64)), false},
		{"a123456789012345678901234567890123456789012345678901234567890bc", true}, // 63
		{"a123456789012345678901234567890123456789012345678901234567890bcd", false},
	}
	for _, tt := range tests {
		if got := ValidInstance(tt.v); got != tt.want {
			t.Errorf("ValidInstance(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}
