//! The image model and the 9-column backup CSV format.
//!
//! Row: `region,name,id,status,size,checksum,owner,is_public,user_properties`
//! where `is_public` is `True`/`False` and `user_properties` is a Python dict
//! literal, quoted when it contains a comma. Blank lines are ignored.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pyvalue::{parse_properties, properties_repr, Properties, PyValue};

/// Server-side attributes the CSV does not hold (Glance's record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RawImage {
    /// Disk format (`qcow2`, `raw`, `aki`…).
    pub disk_format: Option<String>,
    /// Container format (`bare`, `aki`…).
    pub container_format: Option<String>,
    /// Deletion protection.
    pub protected: bool,
    /// Minimum RAM in MB.
    pub min_ram: u64,
    /// Minimum disk in GB.
    pub min_disk: u64,
    /// The cloud's own content hash algorithm (`os_hash_algo`), when known.
    pub os_hash_algo: Option<String>,
    /// The cloud's own content hash (`os_hash_value`), when known.
    pub os_hash_value: Option<String>,
}

/// An image in one region.
///
/// Its JSON form (plans, plan fixtures) has the nine backup fields plus
/// `raw`; `status` defaults to `active`, `is_public` to true, the rest to empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Region full name (`Region` for the master target, `target:Region` otherwise).
    #[serde(default)]
    pub region: String,
    /// Image name.
    pub name: String,
    /// Image id (a UUID on Glance; `<n>$<name>` for images created by the CSV backend).
    #[serde(default)]
    pub id: String,
    /// Glance status (`active`, `queued`…).
    #[serde(default = "active")]
    pub status: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// md5 checksum reported by Glance (`None` when Glance has none).
    #[serde(default)]
    pub checksum: Option<String>,
    /// Owner tenant id (empty when none).
    #[serde(default)]
    pub owner: String,
    /// Public visibility.
    #[serde(default = "yes")]
    pub is_public: bool,
    /// User properties.
    #[serde(default)]
    pub user_properties: Properties,
    /// Server-side record, when the image came from a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawImage>,
}

fn active() -> String {
    "active".to_string()
}

fn yes() -> bool {
    true
}

impl Image {
    /// A new active image with no properties (test and tool helper).
    pub fn new(region: &str, name: &str, id: &str) -> Self {
        Image {
            region: region.to_string(),
            name: name.to_string(),
            id: id.to_string(),
            status: "active".to_string(),
            size: 0,
            checksum: None,
            owner: String::new(),
            is_public: true,
            user_properties: Properties::new(),
            raw: None,
        }
    }

    /// The nine backup fields on one line (`|`-separated), the properties
    /// as sorted `key=repr` pairs: equal for two images that hold the same
    /// backup row up to the order of their properties (for comparing region
    /// states).
    pub fn state_key(&self) -> String {
        let mut props: Vec<String> = self
            .user_properties
            .iter()
            .map(|(k, v)| format!("{k}={}", v.repr()))
            .collect();
        props.sort();
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.region,
            self.name,
            self.id,
            self.status,
            self.size,
            self.checksum_str(),
            self.owner,
            self.is_public,
            props.join(",")
        )
    }

    /// The checksum as a string (`"None"` when absent, as Python prints it).
    pub fn checksum_str(&self) -> &str {
        self.checksum.as_deref().unwrap_or("None")
    }

    /// The nine CSV fields.
    pub fn to_fields(&self) -> [String; 9] {
        [
            self.region.clone(),
            self.name.clone(),
            self.id.clone(),
            self.status.clone(),
            self.size.to_string(),
            self.checksum_str().to_string(),
            self.owner.clone(),
            if self.is_public {
                "True".into()
            } else {
                "False".into()
            },
            properties_repr(&self.user_properties),
        ]
    }

    /// Build an image from nine CSV fields.
    pub fn from_fields(fields: &[&str]) -> std::result::Result<Self, String> {
        if fields.len() != 9 {
            return Err(format!("expected 9 columns, found {}", fields.len()));
        }
        let size = fields[4]
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("column 5 (size) is not an integer: '{}'", fields[4]))?;
        let user_properties =
            parse_properties(fields[8]).map_err(|e| format!("column 9 (user_properties): {e}"))?;
        let checksum = match fields[5] {
            "None" | "" => None,
            c => Some(c.to_string()),
        };
        Ok(Image {
            region: fields[0].to_string(),
            name: fields[1].to_string(),
            id: fields[2].to_string(),
            status: fields[3].to_string(),
            size,
            checksum,
            owner: fields[6].to_string(),
            is_public: fields[7].trim() == "True",
            user_properties,
            raw: None,
        })
    }

    /// Property value by name.
    pub fn prop(&self, key: &str) -> Option<&PyValue> {
        self.user_properties.get(key)
    }

    /// Size in MB as the original prints it (`str(float(size) / 1024 / 1024)`).
    pub fn size_mb_str(&self) -> String {
        #[allow(clippy::cast_precision_loss)]
        crate::pyvalue::float_repr(self.size as f64 / 1024.0 / 1024.0)
    }
}

/// Quote a CSV field as Python's `csv.writer` (QUOTE_MINIMAL) does.
pub fn csv_field(f: &str) -> std::borrow::Cow<'_, str> {
    if f.contains([',', '"', '\n', '\r']) {
        std::borrow::Cow::Owned(format!("\"{}\"", f.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(f)
    }
}

/// Write one image as a CSV line, terminated by `\r\n` as Python's `csv.writer` does.
pub fn write_csv_row(out: &mut impl Write, image: &Image) -> std::io::Result<()> {
    let fields = image.to_fields();
    let mut line = String::with_capacity(160);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&csv_field(f));
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Serialise images as backup CSV text.
pub fn images_to_csv(images: &[Image]) -> String {
    let mut buf = Vec::new();
    for i in images {
        // Writing into a Vec cannot fail.
        let _ = write_csv_row(&mut buf, i);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// One CSV record: its 1-based starting line and its fields.
pub type CsvRecord = (u64, Vec<String>);

/// Split CSV text into records as Python's `csv.reader` does (quoted fields
/// may hold commas, doubled quotes and newlines); each record carries its
/// 1-based starting line. Blank lines are skipped.
pub fn split_csv_records(text: &str) -> std::result::Result<Vec<CsvRecord>, (u64, String)> {
    let mut out = Vec::new();
    let mut line: u64 = 1;
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let start_line = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut in_quotes = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if in_quotes {
                    return Err((
                        start_line,
                        "unexpected end of file inside a quoted field".into(),
                    ));
                }
                break;
            };
            if in_quotes {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        in_quotes = false;
                    }
                } else {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    in_quotes = true;
                    was_quoted = true;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() == 1 && fields[0].is_empty() && !was_quoted {
            continue;
        }
        out.push((start_line, fields));
    }
    Ok(out)
}

/// Parse backup CSV text; `path` names it in errors.
pub fn parse_csv(path: &Path, text: &str) -> Result<Vec<Image>> {
    let records = split_csv_records(text).map_err(|(line, message)| Error::Csv {
        file: path.to_path_buf(),
        line,
        message,
    })?;
    let mut out = Vec::with_capacity(records.len());
    for (line, rec) in records {
        let fields: Vec<&str> = rec.iter().map(String::as_str).collect();
        let img = Image::from_fields(&fields).map_err(|message| Error::Csv {
            file: path.to_path_buf(),
            line,
            message,
        })?;
        out.push(img);
    }
    Ok(out)
}

/// Read a backup CSV file.
pub fn read_csv_file(path: &Path) -> Result<Vec<Image>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(path, &text)
}

/// Write a backup CSV file (atomically: temp file + rename).
pub fn write_csv_file(path: &Path, images: &[Image]) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, images_to_csv(images)).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_key_names_every_field_and_ignores_property_order() {
        let mut a = Image::new("R", "img", "1");
        a.user_properties = parse_properties("{'b': 2, 'a': 'x'}").unwrap();
        let mut b = a.clone();
        b.user_properties = parse_properties("{'a': 'x', 'b': 2}").unwrap();
        assert_eq!(a.state_key(), "R|img|1|active|0|None||true|a='x',b=2");
        assert_eq!(a.state_key(), b.state_key());
        b.checksum = Some("c".into());
        assert_ne!(a.state_key(), b.state_key());
    }

    const ROWS: &str = "Burgos,image01,101,active,1073741824,ddfe163345d338193ac2bdc183f8e9dcff904b43,tenant1id,True,\"{'type': 'ngimages', 'nid': 1}\"\nBurgos,image02,102,active,1073741834,bcac9d1d8eab3713ae489224d0130c9468e7a0e3,tenant1id,False,{'type': 'baseimage'}\n\nBurgos,image04,104,active,1073741854,798f861ee74f6ff83ccbc9c53b419941d0080e50,tenant1id,True,{}\n";

    #[test]
    fn csv_round_trip_is_byte_identical() {
        let imgs = parse_csv(Path::new("x.csv"), ROWS).unwrap();
        assert_eq!(imgs.len(), 3);
        assert_eq!(imgs[0].user_properties["nid"], PyValue::Int(1));
        assert!(!imgs[1].is_public);
        assert_eq!(
            images_to_csv(&imgs),
            ROWS.replace("\n\n", "\n").replace('\n', "\r\n")
        );
        // CRLF input (as the original writes) parses the same.
        assert_eq!(
            parse_csv(Path::new("x.csv"), &images_to_csv(&imgs)).unwrap(),
            imgs
        );
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let e = parse_csv(Path::new("b.csv"), "a,b,c\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.csv:1:") && e.contains("9 columns"), "{e}");
        let e = parse_csv(Path::new("b.csv"), "\nR,n,1,active,x,c,o,True,{}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.csv:2:") && e.contains("size"), "{e}");
        let e = parse_csv(Path::new("b.csv"), "R,n,1,active,1,c,o,True,{'a': x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 9"), "{e}");
    }

    #[test]
    fn size_mb_like_python() {
        let mut i = Image::new("R", "n", "1");
        i.size = 1024 * 1024;
        assert_eq!(i.size_mb_str(), "1.0");
        i.size = 1073741834;
        assert_eq!(i.size_mb_str(), "1024.0000095367432");
    }
}
