package deploytest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cronField is one field of a standard cron expression.
type cronField struct {
	name     string
	min, max int
	names    map[string]int // JAN..DEC, SUN..SAT
	question bool           // "?" allowed (day of month, day of week)
}

var monthNames = map[string]int{"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
	"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}

var dayNames = map[string]int{"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31, question: true},
	{name: "month", min: 1, max: 12, names: monthNames},
	{name: "day of week", min: 0, max: 6, names: dayNames, question: true},
}

var cronDescriptors = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true,
	"@weekly": true, "@daily": true, "@midnight": true, "@hourly": true}

// CheckCronSchedule reports whether expr is a schedule the Kubernetes
// CronJob controller accepts: five fields (minute hour day-of-month month
// day-of-week) or a descriptor such as @daily. The 6-field form with
// seconds that Harbor's UI uses, and TZ= prefixes (use spec.timeZone), are
// errors.
func CheckCronSchedule(expr string) error {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return fmt.Errorf("empty schedule")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return fmt.Errorf("schedule %q: a TZ prefix is not supported by CronJobs, set spec.timeZone", expr)
	}
	if strings.HasPrefix(expr, "@") {
		if d, ok := strings.CutPrefix(expr, "@every "); ok {
			if dur, err := time.ParseDuration(strings.TrimSpace(d)); err != nil || dur <= 0 {
				return fmt.Errorf("schedule %q: bad @every duration", expr)
			}
			return nil
		}
		if !cronDescriptors[expr] {
			return fmt.Errorf("schedule %q: unknown descriptor", expr)
		}
		return nil
	}
	fields := strings.Fields(expr)
	if len(fields) != len(cronFields) {
		hint := ""
		if len(fields) == 6 {
			hint = " (a 6-field cron with seconds, as Harbor's UI takes? drop the first field)"
		}
		return fmt.Errorf("schedule %q: %d fields, want 5: minute hour day-of-month month day-of-week%s", expr, len(fields), hint)
	}
	for i, f := range fields {
		if err := cronFields[i].check(f); err != nil {
			return fmt.Errorf("schedule %q: %w", expr, err)
		}
	}
	return nil
}

func (cf cronField) check(field string) error {
	for _, part := range strings.Split(field, ",") {
		if err := cf.checkPart(part); err != nil {
			return fmt.Errorf("%s field %q: %w", cf.name, field, err)
		}
	}
	return nil
}

// checkPart checks one list element: * ? N N-M, each optionally /step.
func (cf cronField) checkPart(part string) error {
	rng, step, hasStep := strings.Cut(part, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n <= 0 {
			return fmt.Errorf("bad step %q", step)
		}
	}
	switch {
	case rng == "*":
		return nil
	case rng == "?":
		if !cf.question {
			return fmt.Errorf("? is only allowed in day of month and day of week")
		}
		return nil
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	from, err := cf.value(lo)
	if err != nil {
		return err
	}
	if !isRange {
		return nil
	}
	to, err := cf.value(hi)
	if err != nil {
		return err
	}
	if from > to {
		return fmt.Errorf("range %q runs backwards", rng)
	}
	return nil
}

func (cf cronField) value(s string) (int, error) {
	if v, ok := cf.names[strings.ToUpper(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < cf.min || n > cf.max {
		return 0, fmt.Errorf("%d is outside %d-%d", n, cf.min, cf.max)
	}
	return n, nil
}
