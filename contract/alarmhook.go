package contract

// The alarm hook's settings (cmd/pulse-alarm-hook), shared with the
// installer that writes its config file (cmd/pulse-netdata-files). Each is
// an environment variable and a KEY=value line of the config file.
const (
	// EnvAlarmURL is pulsed's webhook URL (http:// or https://).
	EnvAlarmURL = "PULSE_ALARM_URL"
	// EnvAlarmTokenFile is the file holding the webhook's bearer token.
	EnvAlarmTokenFile = "PULSE_ALARM_TOKEN_FILE"
	// EnvAlarmCAFile is the PEM bundle an https:// URL is verified with;
	// empty: the system's CAs.
	EnvAlarmCAFile = "PULSE_ALARM_CA_FILE"
	// EnvAlarmHookConfig names the hook's config file instead of
	// DefaultAlarmHookConfig.
	EnvAlarmHookConfig = "PULSE_ALARM_CONFIG"
	// DefaultAlarmHookConfig is the hook's config file, which the
	// installer writes (root:root 0644): Netdata runs the hook with its own
	// environment, so the install's webhook URL and CA file come from here.
	DefaultAlarmHookConfig = "/etc/pulse/alarm-hook.conf"
)
