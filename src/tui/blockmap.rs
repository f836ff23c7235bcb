//! The block map: the whole source drawn as a grid of cells, each showing the worst status of the
//! bytes it covers, so a single bad sector on a terabyte disk still shows up.

use crate::mapfile::{Block, BlockStatus};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// Order of badness: a cell shows the highest-ranked status found in it.
fn rank(s: BlockStatus) -> u8 {
    match s {
        BlockStatus::Finished => 0,
        BlockStatus::NonTried => 1,
        BlockStatus::NonTrimmed => 2,
        BlockStatus::NonScraped => 3,
        BlockStatus::BadSector => 4,
    }
}

/// ASCII symbols so that the map reads on a monochrome serial console too.
pub fn symbol(s: BlockStatus) -> &'static str {
    match s {
        BlockStatus::Finished => "#",
        BlockStatus::NonTried => ".",
        BlockStatus::NonTrimmed => "*",
        BlockStatus::NonScraped => "/",
        BlockStatus::BadSector => "X",
    }
}

pub fn style(s: BlockStatus) -> Style {
    match s {
        BlockStatus::Finished => Style::new().fg(Color::Green),
        BlockStatus::NonTried => Style::new().fg(Color::DarkGray),
        BlockStatus::NonTrimmed => Style::new().fg(Color::Yellow),
        BlockStatus::NonScraped => Style::new().fg(Color::Magenta),
        BlockStatus::BadSector => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// Words for the legend.
pub fn label(s: BlockStatus) -> &'static str {
    match s {
        BlockStatus::Finished => "rescued",
        BlockStatus::NonTried => "not tried",
        BlockStatus::NonTrimmed => "to trim",
        BlockStatus::NonScraped => "to scrape",
        BlockStatus::BadSector => "bad",
    }
}

/// The cell index holding byte `pos` when `size` bytes are spread over `n` cells.
fn cell_of(pos: u64, size: u64, n: usize) -> usize {
    ((u128::from(pos) * n as u128) / u128::from(size.max(1))) as usize
}

/// Worst status per cell for `n` cells over `[0, size)`; `None` for cells outside any block.
///
/// One pass over the blocks and the cells: cheap enough to redo on every frame.
pub fn cells(blocks: &[Block], size: u64, n: usize) -> Vec<Option<BlockStatus>> {
    let mut out: Vec<Option<BlockStatus>> = vec![None; n];
    if n == 0 || size == 0 {
        return out;
    }
    for b in blocks {
        if b.size == 0 || b.pos >= size {
            continue;
        }
        let first = cell_of(b.pos, size, n);
        // The cell holding the block's last byte, rounding up so that no cell is left out when
        // there are more cells than bytes.
        let end = u128::from(b.end().min(size));
        let last = ((end * n as u128).div_ceil(u128::from(size)) as usize)
            .saturating_sub(1)
            .clamp(first, n - 1);
        for c in &mut out[first..=last] {
            if c.is_none_or(|old| rank(b.status) > rank(old)) {
                *c = Some(b.status);
            }
        }
    }
    out
}

/// The grid widget. `pos` marks the current read position.
pub struct BlockMap<'a> {
    pub blocks: &'a [Block],
    pub size: u64,
    pub pos: Option<u64>,
}

impl Widget for BlockMap<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let w = usize::from(area.width);
        let n = w * usize::from(area.height);
        if n == 0 {
            return;
        }
        let cells = cells(self.blocks, self.size, n);
        let marker = self
            .pos
            .filter(|&p| p < self.size)
            .map(|p| cell_of(p, self.size, n));
        for (i, c) in cells.iter().enumerate() {
            let x = area.x + (i % w) as u16;
            let y = area.y + (i / w) as u16;
            let (sym, st) = match c {
                Some(s) => (symbol(*s), style(*s)),
                None => (" ", Style::new()),
            };
            let (sym, st) = if marker == Some(i) {
                ("@", st.add_modifier(Modifier::REVERSED | Modifier::BOLD))
            } else {
                (sym, st)
            };
            if let Some(cell) = buf.cell_mut((x, y)) {
                cell.set_symbol(sym).set_style(st);
            }
        }
    }
}

/// The legend line: symbol and words for each status, and the position marker.
pub fn legend(with_pos: bool) -> Line<'static> {
    let mut spans = Vec::new();
    for s in [
        BlockStatus::Finished,
        BlockStatus::NonTried,
        BlockStatus::NonTrimmed,
        BlockStatus::NonScraped,
        BlockStatus::BadSector,
    ] {
        spans.push(Span::styled(symbol(s), style(s)));
        spans.push(Span::raw(format!(" {}  ", label(s))));
    }
    if with_pos {
        spans.push(Span::styled(
            "@",
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
        spans.push(Span::raw(" reading here"));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(pos: u64, size: u64, status: BlockStatus) -> Block {
        Block { pos, size, status }
    }

    #[test]
    fn worst_status_wins() {
        let blocks = vec![
            blk(0, 1000, BlockStatus::Finished),
            blk(1000, 1, BlockStatus::BadSector),
            blk(1001, 999, BlockStatus::Finished),
            blk(2000, 2000, BlockStatus::NonTried),
        ];
        let c = cells(&blocks, 4000, 4);
        assert_eq!(
            c,
            vec![
                Some(BlockStatus::Finished),
                Some(BlockStatus::BadSector),
                Some(BlockStatus::NonTried),
                Some(BlockStatus::NonTried),
            ]
        );
    }

    #[test]
    fn more_cells_than_bytes() {
        let blocks = vec![
            blk(0, 2, BlockStatus::Finished),
            blk(2, 2, BlockStatus::BadSector),
        ];
        let c = cells(&blocks, 4, 8);
        assert!(c[..4].iter().all(|c| *c == Some(BlockStatus::Finished)));
        assert!(c[4..].iter().all(|c| *c == Some(BlockStatus::BadSector)));
    }

    #[test]
    fn empty_inputs() {
        assert!(cells(&[], 0, 10).iter().all(Option::is_none));
        assert!(cells(&[blk(0, 5, BlockStatus::Finished)], 5, 0).is_empty());
    }
}
