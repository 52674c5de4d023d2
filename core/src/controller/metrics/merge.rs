//! One scrape of every route: each route's controller renders its own text (every sample
//! labelled with its route), and the Worker merges them here into one text in which each family
//! appears once, as the exposition format asks, followed by the family that says which
//! controllers answered.

use std::fmt::Write;

use super::escape_label;

/// One family being gathered: its HELP and TYPE lines, then every route's samples.
struct Family<'a> {
    name: &'a str,
    text: String,
    /// Its TYPE line is in (each route's text repeats it).
    typed: bool,
}

/// One exposition text of several controllers' texts: each family's samples together under
/// one HELP and TYPE, in the order families first appear. The samples are left as they are.
/// Linear in the texts' size: each line is looked at once, and a family is found among the
/// few dozen by name.
pub fn merge<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut families: Vec<Family<'a>> = Vec::new();
    let mut size = 0;
    for text in texts {
        size += text.len();
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                let at = families.iter().position(|f| f.name == name);
                current = Some(at.unwrap_or_else(|| {
                    families.push(Family {
                        name,
                        text: format!("{line}\n"),
                        typed: false,
                    });
                    families.len() - 1
                }));
                continue;
            }
            let Some(family) = current.map(|i| &mut families[i]) else {
                continue;
            };
            if line.starts_with("# TYPE ") {
                if family.typed {
                    continue;
                }
                family.typed = true;
            }
            family.text.push_str(line);
            family.text.push('\n');
        }
    }
    let mut out = String::with_capacity(size);
    for family in families {
        out.push_str(&family.text);
    }
    out
}

/// The family that says which routes' controllers answered a scrape (1) and which were left
/// out (0), from `(route, answered)`.
pub fn route_scrape_family(routes: &[(&str, bool)]) -> String {
    let mut out = String::from(
        "# HELP bluegreen_route_scrape_ok Whether the route's controller answered this scrape \
         (1); 0: its series are missing from it.\n# TYPE bluegreen_route_scrape_ok gauge\n",
    );
    for (route, ok) in routes {
        let _ = writeln!(
            out,
            "bluegreen_route_scrape_ok{{route=\"{}\"}} {}",
            escape_label(route),
            u8::from(*ok)
        );
    }
    out
}
